"""What training on several workers adds to a run: the learning rate scaled with the global batch and
reached by a warm-up, and the self-profile (compute step and all-reduce sweep) taken before training."""

import os
import time


def scaled_learning_rate(training, workers):
    """Linear scaling with the global batch and a linear warm-up (Goyal et al. 2017)."""
    base = float(training["learning_rate"])
    return base * workers if training["scale_learning_rate"] else base


def learning_rate(keras, training, workers, steps_per_epoch):
    """(what the optimiser takes, the run record's cluster fields): one machine trains at the
    configured rate; a cluster warms up to the scaled rate over `training.warmup_epochs`."""
    base, peak = float(training["learning_rate"]), scaled_learning_rate(training, workers)
    warmup_steps = int(float(training["warmup_epochs"]) * steps_per_epoch) if workers > 1 else 0
    rate = _warmup_schedule(keras, base, peak, warmup_steps) if workers > 1 else peak
    return rate, {"base_learning_rate": base, "scaled_learning_rate": peak, "warmup_steps": warmup_steps}


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


def compute_step_seconds(build, images, packed_targets, batch_size, steps=8):
    """Seconds of each of `steps` forward and backward passes on one per-worker batch of a model
    `build()` makes, with no all-reduce (the first, which traces the graph, not counted).

    Every cluster worker runs this at the same moment, so the workers share the machine as they do
    in training; a cluster step's excess over it estimates the time spent in, or waiting for, the
    all-reduce. It is a second estimate beside the measured sweep (kpbench.train.collective), never the
    input of a fit: on a shared machine it can come out at or below zero.
    """
    import tensorflow as tf

    from kpbench.model.objectives import masked_mse

    model = build()
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


def self_profile(strategy, model, build, images, packed_targets, batch_size):
    """What kpbench measures about a cluster for itself before training: each worker's own compute
    step (on a plain model `build()` makes) and the all-reduce sweep. Timed apart from init and
    training, which it must not inflate."""
    from kpbench.train import collective

    start = time.time()
    compute = compute_step_seconds(build, images, packed_targets, batch_size)
    sweep = collective.measure(strategy, collective.gradient_bytes(collective.trainable_parameters(model)))
    return compute, sweep, time.time() - start
