"""What `mixed_bfloat16` would save on this CPU, measured where the CPU computes bfloat16 in hardware.

The paper reports FP32. On a CPU with AMX or AVX512_BF16, Keras' mixed_bfloat16 policy runs the
convolutions and matmuls in bfloat16 (1.78x the FP32 step on a Zen 4 EPYC, bench/RESULTS.md),
so a reader renting such a machine needs the saving and what it does to the keypoints. The reference
run (a local single-worker instance's first repeat) is trained again through the same launcher with
only the precision changed; a CPU without those units would emulate bfloat16 in software, so there
nothing is trained and the measurement says why.
"""

from pathlib import Path

from kpbench.core.files import read_json, write_json

BF16 = "mixed_bfloat16"
# The ISA features (kpbench.machine.description) with which a CPU computes bfloat16 in hardware.
BF16_UNITS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512_BF16"}


def bf16_units(hardware):
    """The names of the CPU's bfloat16 units in a run's hardware record; none where it has none (or
    the record could not tell). Records made before the CPU description kept only an avx512_bf16 flag."""
    isa = (hardware.get("cpu") or {}).get("isa") or {"avx512_bf16": hardware.get("avx512_bf16")}
    return [name for feature, name in BF16_UNITS.items() if isa.get(feature)]


def _figures(run):
    """A run's figures the comparison prints: steps and `fit` wall time, and the final quality."""
    timings, metrics = run["timings"], run["metrics"]
    return {"train_step_images_per_s": timings.get("train_step_images_per_s"),
            "images_per_s": timings.get("images_per_s"), "train_s": timings.get("train_s"),
            "val_rmse_px": metrics.get("val_rmse_px"), "val_pck": metrics.get("val_pck"),
            "precision": run["training"].get("precision", "float32"), "contention": run.get("contention")}


def _ratio(numerator, denominator):
    return numerator / denominator if numerator and denominator else None


def _why_not(reference, hardware, units):
    """Why the reference run has no bfloat16 counterpart to measure, or None."""
    if reference["training"].get("precision", "float32") != "float32":
        return f"the runs already train in {reference['training']['precision']}"
    if hardware.get("gpu_count"):
        return "the runs trained on a GPU, whose reduced precision is mixed_float16"
    if not units:
        return "this CPU has neither AMX nor AVX512_BF16, the x86 units with which TensorFlow computes bfloat16 in hardware"
    return None


def compare(reference_path, spec, launch, dataset, run_dir, out_path):
    """Write the comparison as JSON to `out_path`: the reference run's figures beside those of the
    same run in mixed_bfloat16 (trained into `run_dir`), or why nothing was trained."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)  # the rule's output, empty where nothing trains
    reference = read_json(reference_path)
    hardware = reference.get("hardware") or {}
    units = bf16_units(hardware)
    result = {"reference_run": {"instance": reference["instance"]["name"], "repeat": reference.get("repeat", 1),
                                "seed": reference.get("seed")},
              "cpu": hardware.get("cpu_model"), "bf16_units": units, "reference": _figures(reference)}
    why_not = _why_not(reference, hardware, units)
    if why_not:
        write_json(out_path, {**result, "measured": False, "reason": why_not})
        return None
    from kpbench.backends.launch import run_instance

    bf16_spec = {**spec, "training": {**spec["training"], "precision": BF16}}
    run = run_instance(bf16_spec, launch, dataset, run_dir)
    mixed = _figures(run)
    result = {**result, "measured": True, BF16: mixed,
              "step_speedup": _ratio(mixed["train_step_images_per_s"], result["reference"]["train_step_images_per_s"]),
              "fit_speedup": _ratio(mixed["images_per_s"], result["reference"]["images_per_s"])}
    write_json(out_path, result)
    return result
