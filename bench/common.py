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
    """The machine as the hardware record describes it (never just a name: RESULTS compares CPUs by
    vendor, family and model, and by the ISA features that set their FLOP per cycle), and the stack."""
    from kpbench.machine.description import describe_cpu, read_sources

    cpu = describe_cpu(read_sources())
    versions = package_versions(framework or default_framework())
    stack = (f"TensorFlow {versions['tensorflow']}" if "tensorflow" in versions
             else f"Keras {versions['keras']} on JAX {versions['jax']}")
    has = [feature for feature, present in cpu["isa"].items() if present] or ["ISA not reported"]
    return (f"{cpu_model()} ({cpu['vendor']} family {cpu['family']} model {cpu['model']}, "
            f"{cpu['physical_cores']} cores x {cpu['threads_per_core']} threads; {' '.join(has)}); "
            f"Python {versions['python']}, {stack}, NumPy {versions['numpy']}, pandas {versions['pandas']}")
