"""Shared benchmark helpers: medians of repeats (this VM stalls now and then) and machine notes."""

import statistics
import time

from kpbench.machine.detect import cpu_model, default_framework, package_versions


def median_seconds(function, repeats):
    """Median wall time of `repeats` calls, and the last call's result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def machine_line(framework=None):
    import os

    versions = package_versions(framework or default_framework())
    stack = (f"TensorFlow {versions['tensorflow']}" if "tensorflow" in versions
             else f"Keras {versions['keras']} on JAX {versions['jax']}")
    return (f"{cpu_model()}, {os.cpu_count()} logical cores; Python {versions['python']}, "
            f"{stack}, NumPy {versions['numpy']}, pandas {versions['pandas']}")
