"""Train stage: one timed training run of the reference CNN, written as run.json, history.csv and
predictions.npz. Every timing is a sample with the machine, software and configuration it came from."""

import csv
import hashlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from kpbench import KpbenchError, costs
from kpbench.hardware import detect_hardware, matmul_gflops, package_versions, process_start_time
from kpbench.peaks import peak_tflops
from kpbench.io import write_json

HISTORY_COLUMNS = ["epoch", "elapsed_s", "epoch_s", "validation_s", "loss", "rmse_px", "mae_px",
                   "pck", "val_loss", "val_rmse_px", "val_mae_px", "val_pck"]
RUN_FILES = ("run.json", "history.csv", "predictions.npz")


def config_hash(spec):
    """Short stable hash of everything that defines a run, to tell comparable runs apart."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _subset(n, limit, seed):
    """A seeded random subset (Kaggle's file lists complete rows first, so a prefix would be biased)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def make_dataset(images, packed_targets, batch_size, shuffle_seed=None):
    """In-memory tf.data pipeline: reshuffled each epoch when seeded, batches prefetched."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, packed_targets))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _epoch_timer(keras):
    class EpochTimer(keras.callbacks.Callback):
        """Wall-clock per epoch, and how much of it validation took, measured around fit's own loop."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.rows = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()
            self.validation_s = 0.0

        def on_test_begin(self, logs=None):
            self.test_start = time.perf_counter()

        def on_test_end(self, logs=None):
            self.validation_s += time.perf_counter() - self.test_start

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            logs = logs or {}
            self.rows.append({
                "epoch": epoch + 1, "elapsed_s": now - self.start, "epoch_s": now - self.epoch_start,
                "validation_s": self.validation_s, "loss": logs.get("loss"), "rmse_px": logs.get("rmse"),
                "mae_px": logs.get("mae"), "pck": logs.get("pck"), "val_loss": logs.get("val_loss"),
                "val_rmse_px": logs.get("val_rmse"), "val_mae_px": logs.get("val_mae"),
                "val_pck": logs.get("val_pck"),
            })

    return EpochTimer()


def per_keypoint_rmse(true_px, predicted_px, mask):
    """RMSE per keypoint over the rows that carry it, in pixels (x and y pooled, as Kaggle scores)."""
    from kpbench.data import KEYPOINTS

    squared = np.square(predicted_px - true_px) * mask
    sums = squared.reshape(len(mask), -1, 2).sum(axis=(0, 2))
    counts = mask.reshape(len(mask), -1, 2).sum(axis=(0, 2))
    return {name: (float(np.sqrt(s / c)) if c else None) for name, s, c in zip(KEYPOINTS, sums, counts)}


def _history_csv(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def run_training(spec, dataset_path, out_dir):
    """Train once as `spec` says and write the run's files into `out_dir`, all or nothing."""
    process_start = process_start_time()
    import_start = time.time()
    import tensorflow as tf
    import tf_keras as keras

    from kpbench.data import load_dataset
    from kpbench.model import build_model, compile_model, layer_table, pack_targets, to_pixels
    imports_s = time.time() - import_start

    workload, training, instance = spec["workload"], spec["training"], spec["instance"]
    seed = int(training["seed"])
    keras.utils.set_random_seed(seed)

    load_start = time.time()
    data = load_dataset(dataset_path)
    train_idx = _subset(len(data["train_images"]), workload.get("max_train_images"), seed)
    val_idx = _subset(len(data["val_images"]), workload.get("max_val_images"), seed + 1)
    x_train, x_val = data["train_images"][train_idx], data["val_images"][val_idx]
    y_train = pack_targets(data["train_targets"][train_idx], data["train_mask"][train_idx])
    y_val = pack_targets(data["val_targets"][val_idx], data["val_mask"][val_idx])
    batch_size = int(workload["batch_size"])
    train_ds = make_dataset(x_train, y_train, batch_size, shuffle_seed=seed)
    val_ds = make_dataset(x_val, y_val, batch_size)
    data_load_s = time.time() - load_start

    build_start = time.time()
    model = compile_model(build_model(training.get("precision", "float32")), training["learning_rate"],
                          training["pck_radius_px"])
    model_build_s = time.time() - build_start
    init_s = time.time() - process_start

    timer = _epoch_timer(keras)
    fit_start = time.time()
    model.fit(train_ds, validation_data=val_ds, epochs=int(workload["epochs"]), callbacks=[timer], verbose=2)
    train_s = time.time() - fit_start
    wall_s = time.time() - process_start

    predicted_px = to_pixels(model.predict(x_val, batch_size=batch_size, verbose=0))
    true_px, mask = data["val_targets"][val_idx], data["val_mask"][val_idx]
    last = timer.rows[-1]
    images_seen = len(x_train) * int(workload["epochs"])
    compute_s = sum(r["epoch_s"] - r["validation_s"] for r in timer.rows)
    usd_per_hour = costs.cluster_usd_per_hour(instance)
    performance = model_flops_utilisation(
        instance, training, train_step_images_per_s=images_seen / compute_s,
        training_flops_per_image=3 * sum(row["flops"] for row in layer_table(model)))
    run = {
        "schema": 1,
        "instance": instance,
        "workload": {**workload, "train_images": len(x_train), "validation_images": len(x_val)},
        "training": training,
        "seed": seed,
        "config_hash": config_hash(spec),
        "hardware": detect_hardware(),
        "software": package_versions(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(process_start)),
        "timings": {
            "imports_s": imports_s, "data_load_s": data_load_s, "model_build_s": model_build_s,
            "init_s": init_s, "train_s": train_s, "wall_s": wall_s,
            "epoch_s": [r["epoch_s"] for r in timer.rows],
            "validation_s": [r["validation_s"] for r in timer.rows],
            "images_per_s": images_seen / train_s,
            "train_step_images_per_s": images_seen / compute_s,
        },
        "metrics": {
            "val_rmse_px": last["val_rmse_px"], "val_mae_px": last["val_mae_px"], "val_pck": last["val_pck"],
            "pck_radius_px": training["pck_radius_px"], "train_loss": last["loss"],
            "per_keypoint_rmse_px": per_keypoint_rmse(true_px, predicted_px, mask),
        },
        "performance": performance,
        "cost": {"usd_per_hour": usd_per_hour, "price_date": instance.get("price_date"),
                 "hours": wall_s / 3600, "usd": costs.run_cost_usd(wall_s, usd_per_hour)},
    }
    samples = slice(0, int(training["prediction_samples"]))
    _write_run(out_dir, run, _history_csv(timer.rows), {
        "images": np.rint(x_val[samples, ..., 0] * 255).astype(np.uint8),
        "true_px": true_px[samples], "mask": mask[samples], "predicted_px": predicted_px[samples],
    })
    return run


def model_flops_utilisation(instance, training, train_step_images_per_s, training_flops_per_image):
    """Achieved GFLOP/s of the training step, against this machine's measured matmul peak and,
    where the catalogue has it, the instance's datasheet peak (MFU)."""
    precision = training.get("precision", "float32")
    achieved = train_step_images_per_s * training_flops_per_image / 1e9
    matmul = matmul_gflops(int(training.get("peak_matmul_size", 4096)))
    device = instance.get("peak_device") or instance.get("gpu_model")
    count = max(1, int(instance.get("gpus") or 1)) if instance.get("gpu_model") else 1
    peak = peak_tflops(device, precision, count * int(instance.get("workers", 1)))
    return {
        "precision": precision,
        "training_flops_per_image": training_flops_per_image,
        "achieved_gflops": achieved,
        "matmul_gflops": matmul,
        "share_of_matmul": achieved / matmul,
        "peak_device": device,
        "peak_tflops": peak,
        "mfu": achieved / (peak * 1e3) if peak else None,
    }


def _write_run(out_dir, run, history_text, predictions):
    """Stage all three files, then move them in with run.json last: run.json marks a whole result."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out_dir))
    try:
        (staging / "history.csv").write_text(history_text)
        with open(staging / "predictions.npz", "wb") as handle:
            np.savez_compressed(handle, **predictions)
        write_json(staging / "run.json", run)
        for name in RUN_FILES:
            (staging / name).replace(out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_spec(text):
    """The run spec comes as JSON on the command line, or as @file for long specs."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KpbenchError(f"run spec is not valid JSON: {exc}") from None
    for key in ("instance", "workload", "training"):
        if key not in spec:
            raise KpbenchError(f"run spec lacks '{key}'")
    return spec
