"""The training and validation data as `model.fit` takes them: a seeded subset of the preprocessed
arrays with packed targets, fed through tf.data (on one machine, or as a cluster's shards) or as
NumPy arrays (Keras 3)."""

import numpy as np

from kpbench import KpbenchError
from kpbench.model.objectives import pack_targets


def subset(n, limit, seed):
    """A seeded random subset (Kaggle's file lists complete rows first, so a prefix would be biased)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def training_arrays(data, workload, seed):
    """The workload's training and validation rows of a loaded dataset (kpbench.data.preprocess.load_dataset),
    with their row indices and packed targets."""
    train_idx = subset(len(data["train_images"]), workload["max_train_images"], seed)
    val_idx = subset(len(data["val_images"]), workload["max_val_images"], seed + 1)
    return {"train_index": train_idx, "val_index": val_idx,
            "x_train": data["train_images"][train_idx], "x_val": data["val_images"][val_idx],
            "y_train": pack_targets(data["train_targets"][train_idx], data["train_mask"][train_idx]),
            "y_val": pack_targets(data["val_targets"][val_idx], data["val_mask"][val_idx]),
            "true_px": data["val_targets"][val_idx], "mask": data["val_mask"][val_idx]}


def fit_feed(framework, strategy, workers, arrays, batch_size, seed):
    """`model.fit`'s data arguments: a cluster's per-worker shards, one machine's tf.data pipeline,
    or arrays Keras 3 batches itself (reshuffled each epoch from the seed Keras was given)."""
    x_train, y_train, x_val, y_val = (arrays[key] for key in ("x_train", "y_train", "x_val", "y_val"))
    if workers > 1:
        return distributed_datasets(strategy, x_train, y_train, x_val, y_val, batch_size, seed)
    if framework == "tf":
        return {**training_feed(x_train, y_train, batch_size, seed), "validation_data": make_dataset(x_val, y_val, batch_size)}
    return {"x": x_train, "y": y_train, "batch_size": batch_size, "shuffle": True, "validation_data": (x_val, y_val)}


def training_feed(images, packed_targets, batch_size, seed):
    """One machine's training data for `fit`: reshuffled every pass, repeated, and each epoch's steps
    given (one pass: ⌈images / batch⌉ steps, the last batch partial), so that `fit` keeps one iterator
    for all its epochs; of a finite dataset tf-keras makes a new one every epoch, and each teardown cost
    time (16-26 s a `fit` on a 2-core Zen 3 EPYC, bench/RESULTS.md §11; the autotuning wait of
    `without_autotune`, §13). A probe's shorter epochs and a resumed run's remaining ones read on from the
    same stream."""
    return {"x": make_dataset(images, packed_targets, batch_size, shuffle_seed=seed, repeat=True),
            "steps_per_epoch": -(-len(images) // batch_size)}


def make_dataset(images, packed_targets, batch_size, shuffle_seed=None, repeat=False):
    """In-memory tf.data pipeline: reshuffled each pass when seeded, repeated without end when asked,
    batches prefetched."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, packed_targets))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    return without_autotune((dataset.repeat() if repeat else dataset).prefetch(tf.data.AUTOTUNE))


def prediction_feed(framework, images, batch_size):
    """`model.predict`'s data arguments: with TensorFlow, a batched pipeline without autotuning (of NumPy
    arrays tf-keras would make an autotuned one); arrays for Keras 3."""
    if framework != "tf":
        return {"x": images, "batch_size": batch_size}
    import tensorflow as tf

    return {"x": without_autotune(tf.data.Dataset.from_tensor_slices(images).batch(batch_size).prefetch(tf.data.AUTOTUNE))}


def without_autotune(dataset):
    """`dataset` with tf.data's autotuning model off. With it on, `fit` returned up to 34 s after its last
    epoch and validations ended late, at 10 ms x (2^k - 1) from their start: the wake-ups of the autotuning
    thread, which sleeps 10 ms, then twice as long each time, up to 60 s (kOptimizationPeriodMinMs/MaxMs in
    tensorflow/core/framework/model.h); with it off, never (bench/RESULTS.md §13). The pipeline reads arrays
    in memory: nothing in it is worth tuning. A cluster's shards carry the option too; whether the iterators
    tf.distribute builds over them keep it is not measured."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


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
            return without_autotune(dataset.batch(per_worker_batch, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))
        return strategy.distribute_datasets_from_function(make)

    return {"x": per_worker(x_train, y_train, train_steps, True), "steps_per_epoch": train_steps,
            "validation_data": per_worker(x_val, y_val, val_steps, False), "validation_steps": val_steps}
