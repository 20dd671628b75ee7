"""Shared benchmark helpers: medians of repeats (this VM stalls now and then) and machine notes."""

import statistics
import time

from kpbench.hardware import cpu_model, package_versions


def median_seconds(function, repeats):
    """Median wall time of `repeats` calls, and the last call's result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def machine_line():
    import os

    versions = package_versions()
    return (f"{cpu_model()}, {os.cpu_count()} logical cores; Python {versions['python']}, "
            f"TensorFlow {versions['tensorflow']}, NumPy {versions['numpy']}, pandas {versions['pandas']}")
