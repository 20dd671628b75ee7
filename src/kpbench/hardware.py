"""What a run ran on and with: every measurement carries its machine and software (as in PKB)."""

import importlib.metadata
import os
import platform
import time
from pathlib import Path

PACKAGES = ("tensorflow", "tf-keras", "numpy", "pandas", "kpbench")


def process_start_time():
    """Wall-clock time at which this process started, so 'init' includes interpreter start-up."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5), counted after the ')' of the command
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def detect_hardware():
    """CPU model and cores, and TensorFlow's view of the GPUs (name and count)."""
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name", device.name))
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "avx512_bf16": "avx512_bf16" in cpu_flags(),
        "gpu_count": len(gpus),
        "gpu_names": gpus,
        "machine": platform.machine(),
        "os": platform.platform(),
    }


def matmul_gflops(size=4096, repeats=3):
    """This machine's practical FP32 peak: the median GFLOP/s of a square matrix multiply."""
    import statistics

    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=tf.float32)
    b = tf.random.normal((size, size), dtype=tf.float32)
    tf.linalg.matmul(a, b).numpy()  # warm-up: kernels chosen, memory allocated
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        seconds.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(seconds) / 1e9


def package_versions():
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
