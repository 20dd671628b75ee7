"""What a finished run leaves in its folder: run.json (every timing a sample with the machine,
software and configuration it came from), history.csv and predictions.npz, written all or nothing."""

import csv
import hashlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from kpbench.backends import registry
from kpbench.core import billing
from kpbench.core.files import write_json
from kpbench.core.layout import HISTORY_CSV, KEYPOINTS_FILE, RUN_FILES, RUN_JSON
from kpbench.core.metrics import KERAS_COLUMNS, METRICS
from kpbench.machine.cpu_settings import settings_record
from kpbench.machine.detect import copy_gbs, detect_hardware, matmul_gflops, package_versions
from kpbench.machine.device_peaks import checked, device_entry, float32_peak, mfu, peak_for, resolve_hardware

HISTORY_COLUMNS = ["epoch", "elapsed_s", "epoch_s", "validation_s", *KERAS_COLUMNS]


def config_hash(spec):
    """Short stable hash of the spec as given (everything that defines the measurement), to tell
    comparable runs apart."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def epoch_batches(images, batch_size):
    """The batch sizes of one epoch, the short last batch included."""
    return [batch_size] * (images // batch_size) + ([images % batch_size] if images % batch_size else [])


def steady_step_images_per_s(step_s, batch_sizes):
    """Images/s of the training steps that trace nothing: the first step of each batch shape traces
    the graph (and, with XLA or on JAX, compiles it), and an epoch's short last batch is a shape of
    its own. The steady state that GFLOP/s and MFU describe (epoch starts and validation are not steps)."""
    seen, steady = set(), []
    for size, step in zip(batch_sizes, step_s):
        if size in seen:
            steady.append((size, step))
        seen.add(size)
    if not steady:  # every step traced: all of them is the best there is
        steady = list(zip(batch_sizes, step_s))
    if not steady:  # no step at all: a run resumed after its last epoch's checkpoint
        return None
    return sum(size for size, _ in steady) / sum(step for _, step in steady)


def machine_peak(instance, hardware, precision, matmul):
    """What MFU is measured against: the peak of the devices the run measured it ran on
    (kpbench.machine.device_peaks.resolve_hardware), or the catalogue device the instance row names as
    `peak_device`, times how many (every core of the machine: loopback workers share them; each EC2
    worker brings its own machine and GPUs). Checked against the matmul one machine measured."""
    machines = registry.kind(instance["backend"]).machines(instance)
    if instance.get("peak_device"):
        entry = {**device_entry(instance["peak_device"]), "device": instance["peak_device"], "kind": "configured"}
        units = hardware["cpu_cores"] if instance["peak_device"].endswith(" vCPU") else 1
    else:
        entry = resolve_hardware(hardware)
        units = entry["units"]
    roof = float32_peak(entry)
    _, note = checked(roof * units if roof else None, matmul)
    per_unit = None if note else peak_for(entry, precision)
    return {"peak_device": entry["device"], "peak_origin": entry["kind"], "peak_source": entry["source"],
            "peak_note": note, "peak_tflops": per_unit * units * machines if per_unit else None}


def model_flops_utilisation(instance, hardware, training, framework, train_step_images_per_s,
                            training_flops_per_image):
    """Achieved GFLOP/s of the training step, against this machine's measured matmul and copy
    bandwidth and against the peak of the devices it ran on (MFU; blank where that peak is unknown or
    wrong); nothing achieved where the run made no step of its own (resumed after its last epoch)."""
    precision = training["precision"]
    achieved = train_step_images_per_s * training_flops_per_image / 1e9 if train_step_images_per_s else None
    matmul = matmul_gflops(int(training["peak_matmul_size"]), framework=framework)
    peak = machine_peak(instance, hardware, precision, matmul)
    return {
        "precision": precision,
        "training_flops_per_image": training_flops_per_image,
        "achieved_gflops": achieved,
        "matmul_gflops": matmul,
        "copy_gbs": copy_gbs(),
        "share_of_matmul": achieved / matmul if achieved is not None else None,
        **peak,
        "mfu": mfu(achieved, peak["peak_tflops"]),
    }


def run_record(spec, framework, cluster, fitted, timings, evaluation):
    """run.json's content. `cluster` holds the batch and learning-rate facts, `fitted` what fit did
    (history rows, step seconds, epochs resumed from, images per epoch, validation images, the time
    limit), `timings` the phases' seconds and `evaluation` the per-keypoint validation RMSE and the
    model's training FLOPs per image."""
    instance, workload, training = spec["instance"], spec["workload"], spec["training"]
    rows, images_per_epoch, resumed = fitted["rows"], fitted["images_per_epoch"], fitted["resumed_from_epoch"]
    step_images_per_s = steady_step_images_per_s(
        fitted["step_s"], epoch_batches(images_per_epoch, cluster["global_batch"]) * (len(rows) - resumed))
    usd_per_hour = billing.cluster_usd_per_hour(instance)
    last, hardware = rows[-1], detect_hardware(framework)
    return {
        "schema": 1,
        "instance": instance,
        "workload": {**workload, "epochs": len(rows), "epochs_requested": int(workload["epochs"]),
                     "train_images": images_per_epoch, "validation_images": fitted["validation_images"]},
        "cluster": cluster,
        "training": training,
        "seed": int(training["seed"]),
        "repeat": int(spec["repeat"]),
        "config_hash": config_hash(spec),
        "hardware": hardware,
        "software": package_versions(framework),
        "cpu_settings": settings_record(framework),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timings["process_start"])),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Resumed from an interrupted run's checkpoint: its epochs were timed in two processes.
        "resumed": resumed > 0,
        "timings": {
            **{key: timings[key] for key in ("imports_s", "data_load_s", "model_build_s", "init_s",
                                             "profiling_s", "train_s", "wall_s")},
            "resumed_from_epoch": resumed, "max_seconds": fitted["max_seconds"],
            "epoch_s": [r["epoch_s"] for r in rows], "validation_s": [r["validation_s"] for r in rows],
            "images_per_s": images_per_epoch * len(rows) / timings["train_s"],
            "train_step_images_per_s": step_images_per_s,
        },
        "metrics": {
            **{metric.name: last[metric.name] for metric in METRICS if metric.keras},
            "pck_radius_px": training["pck_radius_px"], "train_loss": last["loss"],
            "per_keypoint_rmse_px": evaluation["per_keypoint_rmse_px"],
        },
        "performance": model_flops_utilisation(instance, hardware, training, framework, step_images_per_s,
                                               evaluation["training_flops_per_image"]),
        "cost": {"usd_per_hour": usd_per_hour, "price_date": instance["price_date"],
                 "hours": timings["wall_s"] / 3600, "usd": billing.run_cost_usd(timings["wall_s"], usd_per_hour)},
        # A probe (kpbench.forecast.probe): its steps, each timed, and the real epoch it stands for.
        **({"probe": fitted["probe"]} if fitted.get("probe") else {}),
    }


def history_csv(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def move_run_files(staging, out_dir):
    """A run's files from `staging` into its folder, run.json last: run.json marks a whole result."""
    for name in sorted(RUN_FILES, key=lambda name: name == RUN_JSON):
        (Path(staging) / name).replace(Path(out_dir) / name)


def write_run(out_dir, run, history_text, predictions):
    """Stage all three files, then move them in with run.json last: run.json marks a whole result."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out_dir))
    try:
        (staging / HISTORY_CSV).write_text(history_text)
        with open(staging / KEYPOINTS_FILE, "wb") as handle:
            np.savez_compressed(handle, **predictions)
        write_json(staging / RUN_JSON, run)
        move_run_files(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
