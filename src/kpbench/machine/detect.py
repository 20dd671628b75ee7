"""What a run ran on and with: every measurement carries its machine and software (as in PKB).

The framework is "tf" (TensorFlow and tf-keras) or "keras3-jax" (Keras 3 on JAX, kpbench.model.keras3,
for machines with a GPU but no TensorFlow); devices and the matmul peak are read through the one in use.
"""

import importlib.metadata
import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path

from kpbench.machine.description import describe_cpu, describe_gpus, read_sources

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
    """The CPU's model name as its OS reports it (a label; never used to recognise the device)."""
    return describe_cpu(read_sources())["model_name"] or platform.processor() or platform.machine()


def cpu_flags():
    """The CPU's ISA features that set FLOP per cycle, those it has (kpbench.machine.description)."""
    return {feature for feature, present in describe_cpu(read_sources())["isa"].items() if present}


def framework_gpus(framework="tf"):
    """The GPUs as the framework sees them: the driver's name, compute capability and, where the
    framework tells it (JAX), the SM count."""
    if framework == "keras3-jax":
        import jax

        return [{"name": device.device_kind, "compute_capability": getattr(device, "compute_capability", None),
                 "sm_count": getattr(device, "core_count", None)} for device in jax.devices() if device.platform == "gpu"]
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        found.append({"name": details.get("device_name", device.name), "sm_count": None,
                      "compute_capability": ".".join(map(str, capability)) if capability else None})
    return found


def gpu_names(framework="tf"):
    """The GPUs' names as their driver reports them (e.g. "NVIDIA H100 80GB HBM3")."""
    return [gpu["name"] for gpu in framework_gpus(framework)]


def describe_gpus_seen(sources, framework):
    """nvidia-smi's description of each GPU, completed by the framework's (compute capability, SMs);
    a recorded description (KPBENCH_HARDWARE) stands alone."""
    listed = describe_gpus(sources)
    if sources.get("recorded"):
        return listed
    seen = framework_gpus(framework)
    if not listed:
        return [{"max_sm_clock_mhz": None, "memory_bytes": None, "driver": None, **gpu} for gpu in seen]
    for gpu, other in zip(listed, seen):
        gpu.update({key: value for key, value in other.items() if value is not None and not gpu.get(key)})
    return listed


def detect_hardware(framework="tf"):
    """What the run ran on, as measured (kpbench.machine.description): the CPU's ids, topology, ISA,
    clocks, caches and memory, and each GPU's name, compute capability, SMs, clock and memory; the
    summary fields (model name, logical cores, GPU names) beside them."""
    sources = read_sources()
    cpu, gpus = describe_cpu(sources), describe_gpus_seen(sources, framework)
    return {
        "cpu_model": cpu["model_name"],
        "cpu_cores": cpu["logical_cpus"] or os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "avx512_bf16": bool(cpu["isa"].get("avx512_bf16")),
        "cpu": cpu,
        "gpu_count": len(gpus),
        "gpu_names": [gpu["name"] for gpu in gpus],
        "gpus": gpus,
        "machine": cpu["architecture"] or platform.machine(),
        "os": platform.platform(),
        "described_from": sources.get("recorded") or "this machine",
    }


def copy_gbs(megabytes=256, repeats=5):
    """This machine's memory-copy bandwidth in GB/s: bytes read plus written by a copy of an array far
    larger than its caches (the median of `repeats`), the memory roof of a device with no datasheet."""
    import numpy as np

    source = np.ones(megabytes * 2 ** 20 // 4, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # pages touched
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        seconds.append(time.perf_counter() - start)
    return 2 * source.nbytes / statistics.median(seconds) / 1e9


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
