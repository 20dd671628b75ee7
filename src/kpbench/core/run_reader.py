"""Run records as analysis reads them: a run.json is checked against its schema, so a malformed file
stops the analysis with its path and the field at fault, while every honest value passes through —
a zero, a null, NaN, a negative estimate, a run that failed — for the analysis to report."""

from pathlib import Path

import jsonschema

from kpbench import KpbenchError
from kpbench.core.files import read_json

# A measurement may be missing (null) or not a number (NaN, which JSON parsing yields as a float).
_VALUE = {"type": ["number", "null"]}
_TEXT = {"type": ["string", "null"]}

RUN_SCHEMA = {
    "type": "object",
    "required": ["instance", "workload", "timings", "metrics", "performance", "cost", "hardware", "seed",
                 "config_hash", "cluster"],
    "properties": {
        "status": {"enum": ["completed", "failed"]},
        "error": _TEXT,
        "instance": {"type": "object", "required": ["name", "backend"],
                     "properties": {"name": {"type": "string"}, "backend": {"type": "string"},
                                    "workers": {"type": "integer", "minimum": 1}, "network_gbps": _VALUE,
                                    "usd_per_hour": _VALUE}},
        "workload": {"type": "object", "required": ["epochs", "batch_size"],
                     "properties": {"epochs": {"type": "integer", "minimum": 0},
                                    "batch_size": {"type": "integer", "minimum": 1},
                                    "train_images": _VALUE, "validation_images": _VALUE}},
        "timings": {"type": "object", "required": ["init_s", "train_s", "wall_s", "images_per_s"],
                    "properties": {name: _VALUE for name in (
                        "imports_s", "data_load_s", "model_build_s", "init_s", "profiling_s", "train_s", "wall_s",
                        "images_per_s", "train_step_images_per_s", "resumed_from_epoch")}},
        "metrics": {"type": "object", "required": ["val_rmse_px", "val_mae_px", "val_pck"],
                    "properties": {"val_rmse_px": _VALUE, "val_mae_px": _VALUE, "val_pck": _VALUE,
                                   "per_keypoint_rmse_px": {"type": ["object", "null"],
                                                            "additionalProperties": _VALUE}}},
        "performance": {"type": "object", "properties": {
            name: _VALUE for name in ("achieved_gflops", "matmul_gflops", "share_of_matmul", "mfu", "peak_tflops")}},
        "cost": {"type": "object", "required": ["usd_per_hour", "usd"],
                 "properties": {"usd_per_hour": _VALUE, "usd": _VALUE, "hours": _VALUE}},
        "hardware": {"type": "object", "required": ["cpu_cores", "gpu_count", "gpu_names"],
                     "properties": {"cpu_cores": {"type": ["integer", "null"]}, "gpu_count": {"type": "integer"},
                                    "gpu_names": {"type": "array", "items": {"type": "string"}}}},
        "seed": {"type": "integer"},
        "config_hash": {"type": "string"},
        "started_at": _TEXT,
        "finished_at": _TEXT,
        "resumed": {"type": "boolean"},
        # What else used the machine while the run trained (kpbench.core.contention); null where unmeasured.
        "contention": {"type": ["object", "null"], "properties": {
            "samples": {"type": "integer", "minimum": 0},
            "contended": {"type": ["boolean", "null"]},
            "gpu_foreign_processes": {"type": ["array", "null"], "items": {"type": "object"}},
            **{name: _VALUE for name in ("interval_s", "window_s", "foreign_cpu_share", "foreign_cpu_s", "own_cpu_s",
                                         "load_average_max", "threshold")}}},
        "cluster": {"type": "object", "required": ["workers"], "properties": {
            "workers": {"type": "integer", "minimum": 1},
            "median_step_s_per_worker": {"type": "array", "items": _VALUE},
            "wait_estimate": {"type": ["object", "null"], "properties": {
                "resolved": {"type": "boolean"}, "median_s": _VALUE, "compute_step_s": _VALUE}},
            "allreduce": {"type": ["object", "null"], "required": ["workers", "sizes"], "properties": {
                "workers": {"type": "integer", "minimum": 2}, "memcpy_bytes_s": _VALUE,
                "sizes": {"type": "array", "items": {
                    "type": "object", "required": ["bytes", "median_s"],
                    "properties": {"bytes": {"type": "integer", "minimum": 1}, "median_s": _VALUE,
                                   "p10_s": _VALUE, "p90_s": _VALUE, "algbw_bytes_s": _VALUE,
                                   "busbw_bytes_s": _VALUE}}}}},
        }},
    },
}


def run_model(run):
    """The registered model a run trained: runs made before the model registry trained the reference."""
    from kpbench.model.registry import REFERENCE_MODEL

    return run["workload"].get("model") or REFERENCE_MODEL


def read_run(path):
    """The run record at `path`, checked; a schema violation names the file and the field."""
    path = Path(path)
    try:
        run = read_json(path)
    except ValueError as error:
        raise KpbenchError(f"{path}: not valid JSON ({error})") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(RUN_SCHEMA).iter_errors(run))
    if error is not None:
        field = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise KpbenchError(f"{path}: field {field}: {error.message}")
    return run


def finished(run):
    """Whether the run trained to the end; a failed run is reported, never averaged."""
    return run.get("status", "completed") == "completed"
