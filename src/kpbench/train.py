"""Train stage: one timed training run of the reference CNN, written as run.json, history.csv and
predictions.npz. Every timing is a sample with the machine, software and configuration it came from."""

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from kpbench import KpbenchError, costs
from kpbench.hardware import FRAMEWORKS, detect_hardware, matmul_gflops, package_versions, process_start_time
from kpbench.peaks import mfu, peak_tflops
from kpbench.io import write_json

HISTORY_COLUMNS = ["epoch", "elapsed_s", "epoch_s", "validation_s", "loss", "rmse_px", "mae_px",
                   "pck", "val_loss", "val_rmse_px", "val_mae_px", "val_pck"]
RUN_FILES = ("run.json", "history.csv", "predictions.npz")
# Files each worker writes beside its result: the heartbeat with the last epoch, its step times, and
# (in a cluster) its all-reduce sweep; the launcher reads them.
PROGRESS_FILE = "progress.json"
STEPS_FILE = "steps.json"
ALLREDUCE_FILE = "allreduce.json"


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


def distributed_datasets(strategy, x_train, y_train, x_val, y_val, per_worker_batch, seed):
    """Each worker reads its own shard, batched per worker; every worker runs the same number of
    steps (a worker that ran out early would leave its peers waiting in the all-reduce forever)."""
    import tensorflow as tf

    workers = strategy.num_replicas_in_sync
    global_batch = per_worker_batch * workers
    train_steps, val_steps = len(x_train) // global_batch, len(x_val) // global_batch
    if train_steps == 0 or val_steps == 0:
        raise KpbenchError(f"{workers} workers x batch {per_worker_batch} need at least {global_batch} "
                           f"training and validation images; have {len(x_train)} and {len(x_val)}")

    def per_worker(x, y, steps, shuffle):
        def make(context):
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).shard(context.num_input_pipelines,
                                                                      context.input_pipeline_id)
            dataset = dataset.take(steps * per_worker_batch)
            if shuffle:
                dataset = dataset.shuffle(steps * per_worker_batch, seed=seed, reshuffle_each_iteration=True)
            return dataset.batch(per_worker_batch, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)
        return strategy.distribute_datasets_from_function(make)

    return {"x": per_worker(x_train, y_train, train_steps, True), "steps_per_epoch": train_steps,
            "validation_data": per_worker(x_val, y_val, val_steps, False), "validation_steps": val_steps}


def _epoch_timer(keras, earlier_rows=(), journal=None, progress=None):
    class EpochTimer(keras.callbacks.Callback):
        """Wall-clock per epoch, and how much of it validation took, measured around fit's own loop.

        A resumed run starts from the rows of the epochs already done (`earlier_rows`) so its history
        covers every epoch; each finished epoch is journalled so a later resume finds it, and written
        to `progress` (the heartbeat file), where the launcher reads it to print one line per epoch.
        """

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.rows = list(earlier_rows)
            self.offset = self.rows[-1]["elapsed_s"] if self.rows else 0.0

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
            # An epoch redone after a resume replaces its journalled row.
            self.rows = [row for row in self.rows if row["epoch"] < epoch + 1]
            self.rows.append({
                "epoch": epoch + 1, "elapsed_s": self.offset + now - self.start,
                "epoch_s": now - self.epoch_start,
                "validation_s": self.validation_s, "loss": logs.get("loss"), "rmse_px": logs.get("rmse"),
                "mae_px": logs.get("mae"), "pck": logs.get("pck"), "val_loss": logs.get("val_loss"),
                "val_rmse_px": logs.get("val_rmse"), "val_mae_px": logs.get("val_mae"),
                "val_pck": logs.get("val_pck"),
            })
            if journal is not None:
                write_json(journal, self.rows)
            if progress is not None:
                write_json(progress, {**self.rows[-1], "epochs": self.params.get("epochs")})

    return EpochTimer()


def per_keypoint_rmse(true_px, predicted_px, mask):
    """RMSE per keypoint over the rows that carry it, in pixels (x and y pooled, as Kaggle scores)."""
    from kpbench.kaggle_format import KEYPOINTS

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


def cluster_from_environment():
    """(workers, this worker's index) from TF_CONFIG; (1, 0) outside a cluster."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = len(config.get("cluster", {}).get("worker", [])) or 1
    return workers, int(config.get("task", {}).get("index", 0))


def tf_config(addresses, index):
    """TF_CONFIG of worker `index` in a cluster of `addresses` (host:port each)."""
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}


def scaled_learning_rate(training, workers):
    """Linear scaling with the global batch and a linear warm-up (Goyal et al. 2017)."""
    base = float(training["learning_rate"])
    return base * workers if training.get("scale_learning_rate", True) else base


def _warmup_schedule(keras, base, peak, warmup_steps):
    class Warmup(keras.optimizers.schedules.LearningRateSchedule):
        """Rises linearly from the single-worker rate to the scaled rate, then stays there."""

        def __call__(self, step):
            import tensorflow as tf

            if warmup_steps <= 0:
                return tf.constant(peak, tf.float32)
            progress = tf.minimum(tf.cast(step, tf.float32) / float(warmup_steps), 1.0)
            return base + (peak - base) * progress

        def get_config(self):
            return {"base": base, "peak": peak, "warmup_steps": warmup_steps}

    return Warmup()


def _step_timer(keras, progress_path):
    class StepTimer(keras.callbacks.Callback):
        """Seconds per training step, and a heartbeat file the launcher watches for hangs."""

        def on_train_begin(self, logs=None):
            self.step_s = []
            Path(progress_path).touch()

        def on_train_batch_begin(self, batch, logs=None):
            self.step_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step_s.append(time.perf_counter() - self.step_start)
            os.utime(progress_path)
            _injected_fault(len(self.step_s))

    return StepTimer()


def _injected_fault(steps_done):
    """Fault injection for the launcher's tests: KPBENCH_INJECT_FAULT=crash|hang:WORKER:STEP."""
    fault = os.environ.get("KPBENCH_INJECT_FAULT")
    if not fault:
        return
    kind, worker, step = fault.split(":")
    if cluster_from_environment()[1] == int(worker) and steps_done == int(step):
        if kind == "crash":
            os._exit(3)
        time.sleep(10 ** 6)


def _time_limit(keras, max_seconds):
    class TimeLimit(keras.callbacks.Callback):
        """Ends fit after the epoch past which one more, as long as the last, would overrun
        `max_seconds` of training: a lease-bound machine still writes a whole run."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            if now - self.start + (now - self.epoch_start) > max_seconds:
                self.model.stop_training = True

    return TimeLimit()


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
    return sum(size for size, _ in steady) / sum(step for _, step in steady)


def compute_step_seconds(build, precision, images, packed_targets, batch_size, steps=8):
    """Seconds of each of `steps` forward and backward passes on one per-worker batch, with no
    all-reduce (the first, which traces the graph, not counted).

    Every cluster worker runs this at the same moment, so the workers share the machine as they do
    in training; a cluster step's excess over it estimates the time spent in, or waiting for, the
    all-reduce. It is a second estimate beside the measured sweep (kpbench.collective), never the
    input of a fit: on a shared machine it can come out at or below zero.
    """
    import tensorflow as tf

    from kpbench.model import masked_mse

    model = build(precision)
    x, y = tf.constant(images[:batch_size]), tf.constant(packed_targets[:batch_size])

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(masked_mse(y, model(x, training=True)))
        return tape.gradient(loss, model.trainable_variables)

    gradients()  # trace
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        gradients()[-1].numpy()  # waits for the whole backward pass
        seconds.append(time.perf_counter() - start)
    # Tests inflate the estimate past the step time, as a stall during it would.
    return [s * float(os.environ.get("KPBENCH_INJECT_COMPUTE_SCALE", 1)) for s in seconds]


def self_profile(strategy, model, precision, images, packed_targets, batch_size):
    """What kpbench measures about a cluster for itself before training: each worker's own compute
    step and the all-reduce sweep. Timed apart from init and training, which it must not inflate."""
    from kpbench import collective
    from kpbench.model import build_model

    start = time.time()
    compute = compute_step_seconds(build_model, precision, images, packed_targets, batch_size)
    sweep = collective.measure(strategy, collective.gradient_bytes(model))
    return compute, sweep, time.time() - start


def prepare_backup(backup_dir, spec):
    """Keep an interrupted run's checkpoint only if it was made for this very spec (a changed
    configuration starts afresh, so a resume never mixes two), and stamp the folder with the spec.
    The launcher calls this once, before any worker starts: workers of a cluster never race on it."""
    backup_dir, spec_hash = Path(backup_dir), config_hash(spec)
    stamp = backup_dir / "spec_hash"
    if backup_dir.exists() and (not stamp.exists() or stamp.read_text() != spec_hash):
        shutil.rmtree(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(spec_hash)


def _journalled_epochs(backup_dir, worker_index):
    """Epoch rows of the interrupted run, and where the chief journals new ones."""
    if worker_index != 0:
        return [], None
    journal = Path(backup_dir) / "epochs.json"
    return (json.loads(journal.read_text()) if journal.exists() else []), journal


def run_training(spec, dataset_path, out_dir, backup_dir=None, max_seconds=None):
    """Train once as `spec` says and write the run's files into `out_dir`, all or nothing.

    Inside a cluster (TF_CONFIG names several workers) every worker runs this under
    MultiWorkerMirroredStrategy on its own shard; the chief (worker 0) writes the run's files and
    every worker writes its step times. With `backup_dir`, a run interrupted mid-epoch resumes from
    its last finished epoch when started again, and the backup is removed once the run is written.
    With `max_seconds`, training ends after the epoch past which another would overrun that time,
    and the run records the epochs that ran (on one machine: a cluster's workers would stop apart).
    `training.framework` "keras3-jax" trains on one machine with Keras 3 on JAX
    (kpbench.keras3_path), for GPUs without TensorFlow; it compiles with XLA unless told not to.
    """
    process_start = process_start_time()
    workload, training, instance = spec["workload"], spec["training"], spec["instance"]
    framework = training.get("framework", "tf")
    if framework not in FRAMEWORKS:
        raise KpbenchError(f"training.framework must be one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    workers, worker_index = cluster_from_environment()
    if workers > 1 and (framework != "tf" or max_seconds is not None):
        raise KpbenchError("a cluster trains with TensorFlow and without max_seconds "
                           "(its workers would stop at different epochs)")
    import_start = time.time()
    if framework == "tf":
        import tensorflow as tf
        import tf_keras as keras

        from kpbench.model import build_model, compile_model
    else:
        import keras

        from kpbench.keras3_path import build_model, compile_model
    from kpbench.preprocess import load_dataset
    from kpbench.model import layer_table, pack_targets, to_pixels
    imports_s = time.time() - import_start

    if framework == "tf":
        # The strategy must exist before any other TensorFlow op runs.
        strategy = tf.distribute.MultiWorkerMirroredStrategy() if workers > 1 else tf.distribute.get_strategy()
        scope = strategy.scope
    else:
        scope = contextlib.nullcontext
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

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
    global_batch = batch_size * workers
    if workers > 1:
        fit_data = distributed_datasets(strategy, x_train, y_train, x_val, y_val, batch_size, seed)
    elif framework == "tf":
        fit_data = {"x": make_dataset(x_train, y_train, batch_size, shuffle_seed=seed),
                    "validation_data": make_dataset(x_val, y_val, batch_size)}
    else:  # Keras 3 batches the arrays itself, reshuffled each epoch from the seed set above
        fit_data = {"x": x_train, "y": y_train, "batch_size": batch_size, "shuffle": True,
                    "validation_data": (x_val, y_val)}
    data_load_s = time.time() - load_start

    build_start = time.time()
    steps_per_epoch = fit_data.get("steps_per_epoch") or -(-len(x_train) // batch_size)
    peak_lr = scaled_learning_rate(training, workers)
    warmup_steps = int(float(training.get("warmup_epochs", 0)) * steps_per_epoch) if workers > 1 else 0
    learning_rate = (_warmup_schedule(keras, float(training["learning_rate"]), peak_lr, warmup_steps)
                     if workers > 1 else peak_lr)
    precision = training.get("precision", "float32")
    with scope():
        model = compile_model(build_model(precision), learning_rate, training["pck_radius_px"],
                              jit_compile=bool(training.get("jit_compile", framework == "keras3-jax")))
    model_build_s = time.time() - build_start
    init_s = time.time() - process_start
    compute_step_s, profiling_s = None, 0.0
    if workers > 1:
        compute_step_s, sweep, profiling_s = self_profile(strategy, model, precision, x_train, y_train, batch_size)
        write_json(out_dir / ALLREDUCE_FILE, {"worker": worker_index, **sweep})

    earlier_rows, callbacks, journal = [], [], None
    if backup_dir is not None:
        earlier_rows, journal = _journalled_epochs(backup_dir, worker_index)
        callbacks.append(keras.callbacks.BackupAndRestore(str(Path(backup_dir) / "checkpoint")))
    timer = _epoch_timer(keras, earlier_rows, journal, progress=out_dir / PROGRESS_FILE)
    steps = _step_timer(keras, out_dir / PROGRESS_FILE)
    if max_seconds is not None:
        callbacks.append(_time_limit(keras, max_seconds))
    fit_start = time.time()
    model.fit(**fit_data, epochs=int(workload["epochs"]), callbacks=[timer, steps, *callbacks], verbose=2)
    # A resumed run's training time is that of the epochs its result is made of.
    train_s = time.time() - fit_start
    resumed_from_epoch = len(earlier_rows)
    if resumed_from_epoch:
        train_s = sum(row["epoch_s"] for row in timer.rows)
    wall_s = time.time() - process_start
    write_json(out_dir / STEPS_FILE, {"worker": worker_index, "step_s": steps.step_s,
                                      "compute_step_s": compute_step_s})
    # Reading batch-norm statistics is itself an all-reduce under MWMS: every worker takes part.
    weights = model.get_weights()
    if worker_index != 0:
        return None

    # Predict with a plain copy of the trained model: outside the strategy, no collectives needed.
    local_model = build_model(precision)
    local_model.set_weights(weights)
    predicted_px = to_pixels(local_model.predict(x_val, batch_size=batch_size, verbose=0))
    true_px, mask = data["val_targets"][val_idx], data["val_mask"][val_idx]
    last, epochs_run = timer.rows[-1], len(timer.rows)
    images_per_epoch = fit_data.get("steps_per_epoch", 0) * global_batch or len(x_train)
    images_seen = images_per_epoch * epochs_run
    step_images_per_s = steady_step_images_per_s(
        steps.step_s, epoch_batches(images_per_epoch, global_batch) * (epochs_run - resumed_from_epoch))
    usd_per_hour = costs.cluster_usd_per_hour(instance)
    performance = model_flops_utilisation(
        instance, training, train_step_images_per_s=step_images_per_s,
        training_flops_per_image=3 * sum(row["flops"] for row in layer_table(model, keras)))
    run = {
        "schema": 1,
        "instance": instance,
        "workload": {**workload, "epochs": epochs_run, "epochs_requested": int(workload["epochs"]),
                     "train_images": images_per_epoch, "validation_images": len(x_val)},
        "cluster": {"workers": workers, "per_worker_batch": batch_size, "global_batch": global_batch,
                    "base_learning_rate": float(training["learning_rate"]), "scaled_learning_rate": peak_lr,
                    "warmup_steps": warmup_steps, "steps_per_epoch": steps_per_epoch},
        "training": training,
        "seed": seed,
        "repeat": int(spec.get("repeat", 1)),
        "config_hash": config_hash(spec),
        "hardware": detect_hardware(framework),
        "software": package_versions(framework),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(process_start)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Resumed from an interrupted run's checkpoint: its epochs were timed in two processes.
        "resumed": resumed_from_epoch > 0,
        "timings": {
            "imports_s": imports_s, "data_load_s": data_load_s, "model_build_s": model_build_s,
            "init_s": init_s, "profiling_s": profiling_s, "train_s": train_s, "wall_s": wall_s,
            "resumed_from_epoch": resumed_from_epoch, "max_seconds": max_seconds,
            "epoch_s": [r["epoch_s"] for r in timer.rows],
            "validation_s": [r["validation_s"] for r in timer.rows],
            "images_per_s": images_seen / train_s,
            "train_step_images_per_s": step_images_per_s,
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
    # Beside the sample faces, every validation prediction and which rows trained and validated,
    # so the forward-fill measurement compares against this very model instead of training another.
    _write_run(out_dir, run, _history_csv(timer.rows), {
        "images": np.rint(x_val[samples, ..., 0] * 255).astype(np.uint8),
        "true_px": true_px[samples], "mask": mask[samples], "predicted_px": predicted_px[samples],
        "train_index": train_idx, "val_index": val_idx, "val_predicted_px": predicted_px,
    })
    if backup_dir is not None:
        shutil.rmtree(backup_dir, ignore_errors=True)
    return run


def model_flops_utilisation(instance, training, train_step_images_per_s, training_flops_per_image):
    """Achieved GFLOP/s of the training step, against this machine's measured matmul peak and,
    where the catalogue has it, the instance's datasheet peak (MFU)."""
    precision = training.get("precision", "float32")
    achieved = train_step_images_per_s * training_flops_per_image / 1e9
    matmul = matmul_gflops(int(training.get("peak_matmul_size", 4096)), framework=training.get("framework", "tf"))
    device = instance.get("peak_device") or instance.get("gpu_model")
    count = max(1, int(instance.get("gpus") or 1)) if instance.get("gpu_model") else 1
    count *= int(instance.get("workers", 1))
    return {
        "precision": precision,
        "training_flops_per_image": training_flops_per_image,
        "achieved_gflops": achieved,
        "matmul_gflops": matmul,
        "share_of_matmul": achieved / matmul,
        "peak_device": device,
        "peak_tflops": peak_tflops(device, precision, count),
        "mfu": mfu(achieved, device, precision, count),
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
