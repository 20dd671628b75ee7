"""Train stage: one timed training run as its spec says, written as run.json, history.csv and
predictions.npz (kpbench.train.run_writer); and what launchers share with it: the spec, the cluster's
TF_CONFIG, and the backup an interrupted run resumes from."""

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kpbench import KpbenchError
from kpbench.core.files import write_json
from kpbench.core.layout import ALLREDUCE_FILE, PROGRESS_FILE, STEPS_FILE
from kpbench.machine.detect import FRAMEWORKS, process_start_time
from kpbench.model.objectives import per_keypoint_rmse, to_pixels
from kpbench.train import callbacks as cb
from kpbench.train.run_writer import config_hash, history_csv, run_record, write_run

# What defines a measurement (kpbench.core.settings fills each from the configuration); how it is
# launched (limits, AWS) travels apart, so a change there never makes a new measurement. A probe's
# spec adds "probe" (kpbench.core.settings.probe_spec): its epochs and steps.
SPEC_KEYS = ("instance", "workload", "training", "repeat", "data")


def load_spec(text):
    """The run spec comes as JSON on the command line, or as @file for long specs."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KpbenchError(f"run spec is not valid JSON: {exc}") from None
    for key in SPEC_KEYS:
        if key not in spec:
            raise KpbenchError(f"run spec lacks '{key}'")
    return spec


def cluster_from_environment():
    """(workers, this worker's index) from TF_CONFIG; (1, 0) outside a cluster."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = len(config.get("cluster", {}).get("worker", [])) or 1
    return workers, int(config.get("task", {}).get("index", 0))


def tf_config(addresses, index):
    """TF_CONFIG of worker `index` in a cluster of `addresses` (host:port each)."""
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}


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
    if backup_dir is None or worker_index != 0:
        return [], None
    journal = Path(backup_dir) / "epochs.json"
    return (json.loads(journal.read_text()) if journal.exists() else []), journal


def framework_of(training):
    """The framework that trains: tf or keras3-jax. Not a configuration key (the pipeline trains with TensorFlow): only
    bench/gpu.py sets it, and leaves it out for TensorFlow so such a run keeps its configuration hash."""
    framework = training.get("framework", "tf")
    if framework not in FRAMEWORKS:
        raise KpbenchError(f"training.framework must be one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    return framework


@dataclass
class _Run:
    """One training process's settings, handed from phase to phase of run_training."""
    spec: dict
    framework: str
    workers: int
    worker_index: int
    out_dir: Path
    backup_dir: Path | None
    max_seconds: float | None
    keras: object = None
    strategy: object = None  # TensorFlow's; None on Keras 3


def run_training(spec, dataset_path, out_dir, backup_dir=None, max_seconds=None):
    """Train once as `spec` says and write the run's files into `out_dir`, all or nothing.

    Inside a cluster (TF_CONFIG names several workers) every worker runs this under
    MultiWorkerMirroredStrategy on its own shard; the chief (worker 0) writes the run's files and
    every worker writes its step times. With `backup_dir`, a run interrupted mid-epoch resumes from
    its last finished epoch when started again, and the backup is removed once the run is written.
    With `max_seconds`, training ends after the epoch past which another would overrun that time,
    and the run records the epochs that ran (on one machine: a cluster's workers would stop apart).
    `training.framework` "keras3-jax" trains on one machine with Keras 3 on JAX
    (kpbench.model.keras3), for GPUs without TensorFlow.
    """
    timings = {"process_start": process_start_time()}
    run = _Run(spec, framework_of(spec["training"]), *cluster_from_environment(), Path(out_dir),
               backup_dir, max_seconds)
    if run.workers > 1 and (run.framework != "tf" or max_seconds is not None):
        raise KpbenchError("a cluster trains with TensorFlow and without max_seconds "
                           "(its workers would stop at different epochs)")
    with _timed(timings, "imports_s"):
        run.keras = _import_framework(run.framework)
    run.strategy = _strategy(run)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    run.keras.utils.set_random_seed(int(spec["training"]["seed"]))
    _beat(run)
    with _timed(timings, "data_load_s"):
        arrays, feed = _load_data(run, dataset_path)
    _beat(run)
    with _timed(timings, "model_build_s"):
        model, cluster = _compiled_model(run, feed, len(arrays["x_train"]))
    timings["init_s"] = time.time() - timings["process_start"]
    _beat(run)
    compute_step_s, timings["profiling_s"] = _self_profile(run, model, arrays)
    fitted = _fit(run, model, feed, len(arrays["x_train"]))
    timings["train_s"] = fitted.pop("train_s")
    timings["wall_s"] = time.time() - timings["process_start"]
    write_json(run.out_dir / STEPS_FILE, {"worker": run.worker_index, "step_s": fitted["step_s"],
                                          "compute_step_s": compute_step_s})
    _beat(run)
    weights = fitted.pop("weights")
    if run.worker_index != 0:
        return None
    _beat(run)
    steps = fitted.get("probe", {}).get("steps_per_epoch") or feed.get("steps_per_epoch", 0)
    fitted.update(images_per_epoch=steps * cluster["global_batch"] or len(arrays["x_train"]),
                  validation_images=len(arrays["x_val"]), max_seconds=max_seconds)
    return _write_result(run, weights, arrays, cluster, fitted, timings)


def _beat(run):
    """Touch the heartbeat the launcher watches (the training steps touch it too): its stall clock
    restarts at each phase, so that a slow phase is not taken for a hang, and a hung one still is."""
    (run.out_dir / PROGRESS_FILE).touch()


@contextlib.contextmanager
def _timed(timings, key):
    start = time.time()
    yield
    timings[key] = time.time() - start


def _import_framework(framework):
    """The Keras module to train with, imported (with TensorFlow, and kpbench's modules that use
    it) inside the timed imports phase."""
    import kpbench.model.registry  # noqa: F401
    import kpbench.train.inputs  # noqa: F401  (kpbench.data.preprocess and pandas with it)

    if framework == "tf":
        import tensorflow  # noqa: F401
        import tf_keras

        return tf_keras
    import keras

    return keras


def _strategy(run):
    """TensorFlow's distribution strategy, made before any other TensorFlow op runs (it must be)."""
    if run.framework != "tf":
        return None
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy() if run.workers > 1 else tf.distribute.get_strategy()


def _load_data(run, dataset_path):
    from kpbench.data.preprocess import load_dataset
    from kpbench.train.inputs import fit_feed, training_arrays

    seed = int(run.spec["training"]["seed"])
    arrays = training_arrays(load_dataset(dataset_path), run.spec["workload"], seed)
    feed = fit_feed(run.framework, run.strategy, run.workers, arrays, int(run.spec["workload"]["batch_size"]), seed)
    return arrays, feed


def _compiled_model(run, feed, train_images):
    """The workload's model, compiled (under the strategy's scope), and the run record's cluster facts."""
    from kpbench.model.objectives import compile_model
    from kpbench.model.registry import build_model
    from kpbench.train.multi_worker import learning_rate

    training, workload = run.spec["training"], run.spec["workload"]
    batch_size = int(workload["batch_size"])
    steps_per_epoch = feed.get("steps_per_epoch") or -(-train_images // batch_size)
    rate, rates = learning_rate(run.keras, training, run.workers, steps_per_epoch)
    with (run.strategy.scope() if run.strategy else contextlib.nullcontext()):
        model = compile_model(build_model(workload["model"], training["precision"], run.keras), rate,
                              training["pck_radius_px"], bool(training["jit_compile"]), run.keras)
    cluster = {"workers": run.workers, "per_worker_batch": batch_size, "global_batch": batch_size * run.workers,
               **rates, "steps_per_epoch": steps_per_epoch}
    return model, cluster


def _local_builder(run):
    """Makes a plain copy of the workload's model, outside any strategy."""
    from kpbench.model.registry import build_model

    return lambda: build_model(run.spec["workload"]["model"], run.spec["training"]["precision"], run.keras)


def _self_profile(run, model, arrays):
    """(compute step seconds, profiling seconds): a cluster's self-profile, its sweep written beside
    the run; nothing on one machine."""
    if run.workers == 1:
        return None, 0.0
    from kpbench.train.multi_worker import self_profile

    compute, sweep, seconds = self_profile(run.strategy, model, _local_builder(run), arrays["x_train"],
                                           arrays["y_train"], int(run.spec["workload"]["batch_size"]))
    write_json(run.out_dir / ALLREDUCE_FILE, {"worker": run.worker_index, **sweep})
    return compute, seconds


def _fit(run, model, feed, train_images):
    """`model.fit` with one callback per job; the history rows, step seconds, epochs resumed from,
    training seconds (a resumed run's are those of the epochs its result is made of) and the weights."""
    keras = run.keras
    earlier_rows, journal = _journalled_epochs(run.backup_dir, run.worker_index)
    timer, steps, trained = cb.epoch_timer(keras, earlier_rows), cb.step_timer(keras), cb.final_weights(keras)
    callbacks = [timer, steps, trained]
    if journal is not None:
        callbacks.append(cb.epoch_journal(keras, journal, timer))
    callbacks.append(cb.heartbeat(keras, run.out_dir / PROGRESS_FILE, timer))
    if run.backup_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(str(Path(run.backup_dir) / "checkpoint")))
        if journal is not None and run.spec["instance"].get("spot"):  # after the backup: it archives it
            callbacks.append(cb.checkpoint_archive(keras, Path(run.backup_dir)))
    if run.max_seconds is not None:
        callbacks.append(cb.time_limit(keras, run.max_seconds))
    fault = cb.injected_fault(keras, run.worker_index)
    if fault is not None:
        callbacks.append(fault)
    epochs, probe = int(run.spec["workload"]["epochs"]), _probe_steps(run, feed, train_images)
    if probe:
        epochs, feed = probe["epochs"], {**feed, "steps_per_epoch": probe["steps_per_epoch"]}
    fit_start = time.time()
    model.fit(**feed, epochs=epochs, callbacks=callbacks, verbose=2)
    train_s = time.time() - fit_start
    if earlier_rows:
        train_s = sum(row["epoch_s"] for row in timer.rows)
    fitted = {"rows": timer.rows, "step_s": steps.step_s, "resumed_from_epoch": len(earlier_rows), "train_s": train_s,
              "weights": trained.weights}
    return {**fitted, "probe": {**probe, "step_s": steps.step_s}} if probe else fitted


def _probe_steps(run, feed, train_images):
    """A probe's epochs and steps per epoch: as configured, at most half a real epoch's steps each, so
    its epochs never run out of data (a dataset is read once an epoch); with the real epoch's steps and
    images, what it is extrapolated to. Empty for a run."""
    probe = run.spec.get("probe")
    if not probe:
        return {}
    batch = int(run.spec["workload"]["batch_size"]) * run.workers
    full_steps = feed.get("steps_per_epoch") or -(-train_images // batch)
    steps = min(int(probe["steps_per_epoch"]), max(full_steps // int(probe["epochs"]), 1))
    return {"epochs": int(probe["epochs"]), "steps_per_epoch": steps, "warmup_steps": int(probe["warmup_steps"]),
            "full_steps_per_epoch": full_steps}


def _write_result(run, weights, arrays, cluster, fitted, timings):
    """The chief's last part: predict the validation images with a plain copy of the trained model
    (outside the strategy, no collectives needed), write the run, and drop its backup."""
    from kpbench.model.registry import layer_table
    from kpbench.train.inputs import prediction_feed

    local_model = _local_builder(run)()
    local_model.set_weights(weights)
    predicted_px = to_pixels(local_model.predict(**prediction_feed(run.framework, arrays["x_val"], cluster["per_worker_batch"]),
                                                 verbose=0))
    true_px, mask = arrays["true_px"], arrays["mask"]
    evaluation = {"per_keypoint_rmse_px": per_keypoint_rmse(true_px, predicted_px, mask),
                  "training_flops_per_image": 3 * sum(row["flops"] for row in layer_table(local_model, run.keras))}
    result = run_record(run.spec, run.framework, cluster, fitted, timings, evaluation)
    samples = slice(0, int(run.spec["training"]["prediction_samples"]))
    # Beside the sample faces, every validation prediction and which rows trained and validated,
    # so the forward-fill measurement compares against this very model instead of training another.
    write_run(run.out_dir, result, history_csv(fitted["rows"]), {
        "images": (arrays["x_val"][samples, ..., 0] * 255).round().astype("uint8"),
        "true_px": true_px[samples], "mask": mask[samples], "predicted_px": predicted_px[samples],
        "train_index": arrays["train_index"], "val_index": arrays["val_index"], "val_predicted_px": predicted_px,
    })
    if run.backup_dir is not None:
        shutil.rmtree(run.backup_dir, ignore_errors=True)
    return result
