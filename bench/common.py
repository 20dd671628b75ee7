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
    identity = " ".join(f"{field} {cpu[field]}" for field in ("vendor", "family", "model") if cpu[field] is not None)
    name = cpu["model_name"] or cpu["architecture"] or cpu_model()  # a recorded machine's, not this one's
    return (f"{name} ({identity or 'vendor not reported'}, {cpu['physical_cores']} cores x {cpu['threads_per_core']} "
            f"threads; {' '.join(has)}); Python {versions['python']}, {stack}, NumPy {versions['numpy']}, "
            f"pandas {versions['pandas']}")


def reference_training(keras, images, batch_size, seed):
    """The reference CNN compiled as a run compiles it (FP32) and a run's feed of `images` random faces with
    every keypoint labelled: what the CPU-setting benchmarks train. The faces are the same whatever the seed;
    the seed sets the weights and the shuffling."""
    import numpy as np

    from kpbench.model.objectives import compile_model, pack_targets
    from kpbench.model.registry import REFERENCE_MODEL, build_model
    from kpbench.train.inputs import training_feed

    rng = np.random.default_rng(0)
    x = rng.random((images, 96, 96, 1), dtype=np.float32)
    targets = pack_targets(rng.uniform(10, 86, (images, 30)).astype(np.float32), np.ones((images, 30), bool))
    keras.utils.set_random_seed(seed)
    model = compile_model(build_model(REFERENCE_MODEL, "float32", keras), 1e-3, 3.0, False, keras)
    return model, training_feed(x, targets, batch_size, seed=seed)
