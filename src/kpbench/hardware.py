"""What a run ran on and with: every measurement carries its machine and software (as in PKB).

The framework is "tf" (TensorFlow and tf-keras) or "keras3-jax" (Keras 3 on JAX, kpbench.keras3_path,
for machines with a GPU but no TensorFlow); devices and the matmul peak are read through the one in use.
"""

import importlib.metadata
import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path

FRAMEWORKS = ("tf", "keras3-jax")
PACKAGES = {"tf": ("tensorflow", "tf-keras", "numpy", "pandas", "kpbench"),
            "keras3-jax": ("keras", "jax", "jaxlib", "numpy", "pandas", "kpbench")}


def default_framework():
    """TensorFlow where it is installed, else Keras 3 on JAX."""
    return "tf" if importlib.util.find_spec("tensorflow") else "keras3-jax"


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


def gpu_names(framework="tf"):
    """The GPUs as the framework sees them (the driver's names, e.g. "NVIDIA H100 80GB HBM3")."""
    if framework == "keras3-jax":
        import jax

        return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
    import tensorflow as tf

    return [tf.config.experimental.get_device_details(device).get("device_name", device.name)
            for device in tf.config.list_physical_devices("GPU")]


def detect_hardware(framework="tf"):
    """CPU model and cores, and the framework's view of the GPUs (name and count)."""
    gpus = gpu_names(framework)
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


def matmul_gflops(size=4096, repeats=3, framework="tf"):
    """This machine's practical FP32 peak: the median GFLOP/s of a square matrix multiply, at the
    framework's default precision (both allow TensorFloat-32 on NVIDIA GPUs since Ampere, as they
    do for the training's own float32 convolutions)."""
    if framework == "keras3-jax":
        return _jax_matmul_gflops(size, repeats)
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


def _jax_matmul_gflops(size, repeats):
    """As matmul_gflops, in jax.numpy; waits for the product on the device instead of copying it out."""
    import jax
    import jax.numpy as jnp

    a, b = jax.random.normal(jax.random.key(0), (2, size, size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()  # warm-up: compiled, kernels chosen, memory allocated
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        seconds.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(seconds) / 1e9


def package_versions(framework="tf"):
    versions = {"python": platform.python_version(), "framework": framework}
    for name in PACKAGES[framework]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
