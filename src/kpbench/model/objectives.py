"""What training optimises and how it is scored: the target packing, the masked loss, the exact epoch
metrics in pixels, and the compile that joins them.

Targets travel as one (batch, 60) tensor: 30 normalised coordinates, then their 30-entry presence
mask. That keeps `model.fit` standard (one y), lets the loss ignore missing labels instead of
forward-filling them, and works unchanged under tf.distribute strategies. Every model in
kpbench.model.registry ends in the 30 outputs this reads.

Written for whichever Keras module is passed in (tf-keras by default, Keras 3 for
kpbench.model.keras3), so TensorFlow is imported only where the tf-keras versions are made.
"""

import functools

import numpy as np

from kpbench.data.kaggle_format import IMAGE_SIZE, KEYPOINTS

N_TARGETS = 30
CENTRE = IMAGE_SIZE / 2.0          # targets are trained as (pixels - 48) / 48, in [-1, 1]


def tf_keras():
    """tf-keras, imported on first use: the Keras 3 path runs where it is not installed."""
    import tf_keras

    return tf_keras


def normalise_targets(pixels):
    return (pixels - CENTRE) / CENTRE


def to_pixels(normalised):
    return normalised * CENTRE + CENTRE


def pack_targets(pixels, mask):
    """(N, 30) pixel targets + (N, 30) presence mask → the (N, 60) y the loss and metrics read."""
    return np.concatenate([normalise_targets(pixels) * mask, mask.astype("float32")], axis=1).astype("float32")


def _split(y_true):
    return y_true[:, :N_TARGETS], y_true[:, N_TARGETS:]


def _tensorflow_ops():
    """TensorFlow's spelling of the few array ops the loss and metrics use, under keras.ops' names."""
    import types

    import tensorflow as tf

    return types.SimpleNamespace(sum=tf.reduce_sum, square=tf.square, abs=tf.abs, sqrt=tf.sqrt, cast=tf.cast,
                                 maximum=tf.maximum, reshape=tf.reshape, norm=tf.norm,
                                 divide_no_nan=tf.math.divide_no_nan)


def objectives(keras=None):
    """The masked loss and the exact epoch metrics (RMSE, MAE, PCK), made for a Keras module:
    tf-keras (the default) with TensorFlow's ops, or Keras 3 with keras.ops."""
    return _objectives(keras or tf_keras())


# Long: the metric classes close over this `keras` and `ops`, so they are made here together.
@functools.cache
def _objectives(keras):
    """Written once over `ops`, so both frameworks train on the same definitions."""
    ops = _tensorflow_ops() if keras.__name__ == "tf_keras" else keras.ops

    def masked_mse(y_true, y_pred):
        """Mean squared error over the present targets only, per example (Keras averages the batch)."""
        targets, mask = _split(y_true)
        squared = ops.square(y_pred - targets) * mask
        return ops.sum(squared, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)

    class _MaskedSum(keras.metrics.Metric):
        """Accumulates a masked sum and its count over the whole epoch, so the value is exact rather
        than an average of per-batch values; the state is summed across replicas and workers."""

        def __init__(self, name, **kwargs):
            super().__init__(name=name, **kwargs)
            self.total = self.add_weight(name="total", initializer="zeros")
            self.count = self.add_weight(name="count", initializer="zeros")

        def terms(self, targets, predictions, mask):
            raise NotImplementedError

        def update_state(self, y_true, y_pred, sample_weight=None):
            targets, mask = _split(ops.cast(y_true, "float32"))
            total, count = self.terms(targets, ops.cast(y_pred, "float32"), mask)
            self.total.assign_add(total)
            self.count.assign_add(count)

        def reset_state(self):
            self.total.assign(0.0)
            self.count.assign(0.0)

    class RMSE(_MaskedSum):
        """Kaggle's metric: root mean squared error over present coordinates, in pixels."""

        def __init__(self, name="rmse", **kwargs):
            super().__init__(name, **kwargs)

        def terms(self, targets, predictions, mask):
            return ops.sum(ops.square((predictions - targets) * CENTRE) * mask), ops.sum(mask)

        def result(self):
            return ops.sqrt(ops.divide_no_nan(self.total, self.count))

    class MAE(_MaskedSum):
        """Mean absolute error over present coordinates, in pixels."""

        def __init__(self, name="mae", **kwargs):
            super().__init__(name, **kwargs)

        def terms(self, targets, predictions, mask):
            return ops.sum(ops.abs((predictions - targets) * CENTRE) * mask), ops.sum(mask)

        def result(self):
            return ops.divide_no_nan(self.total, self.count)

    class PCK(_MaskedSum):
        """Percentage of correct keypoints: share of present keypoints within `radius_px` pixels."""

        def __init__(self, radius_px=3.0, name="pck", **kwargs):
            super().__init__(name, **kwargs)
            self.radius_px = float(radius_px)

        def terms(self, targets, predictions, mask):
            delta = ops.reshape((predictions - targets) * CENTRE, (-1, N_TARGETS // 2, 2))
            present = ops.reshape(mask, (-1, N_TARGETS // 2, 2))[..., 0]
            hit = ops.cast(ops.norm(delta, axis=-1) <= self.radius_px, "float32") * present
            return ops.sum(hit), ops.sum(present)

        def result(self):
            return ops.divide_no_nan(self.total, self.count)

        def get_config(self):
            return {**super().get_config(), "radius_px": self.radius_px}

    return {"masked_mse": masked_mse, "RMSE": RMSE, "MAE": MAE, "PCK": PCK}


def masked_mse(y_true, y_pred):
    """The tf-keras masked loss (see objectives)."""
    return objectives()["masked_mse"](y_true, y_pred)


def __getattr__(name):
    """RMSE, MAE and PCK subclass tf-keras's Metric, so they are made on first use rather than on
    import: the Keras 3 path imports this module where TensorFlow is not installed."""
    if name in ("RMSE", "MAE", "PCK"):
        return objectives()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compile_model(model, learning_rate, pck_radius_px, jit_compile, keras=None):
    """Adam on the masked loss with the exact epoch metrics; `jit_compile` compiles the training step
    with XLA (slower on CPUs here: bench/RESULTS.md; on JAX, Keras 3 compiles with XLA unless told not to)."""
    made, keras = objectives(keras), keras or tf_keras()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=made["masked_mse"],
                  metrics=[made["RMSE"](), made["MAE"](), made["PCK"](pck_radius_px)], jit_compile=jit_compile)
    return model


def rmse_px(predicted_px, true_px, where):
    """Kaggle's metric in NumPy, as the RMSE metric above sums it over an epoch: root mean squared error
    over the coordinates `where` marks, in pixels; None if it marks none."""
    count = np.sum(where)
    return float(np.sqrt(np.sum(np.square(predicted_px - true_px) * where) / count)) if count else None


def per_keypoint_rmse(true_px, predicted_px, mask):
    """RMSE per keypoint over the rows that carry it, in pixels (x and y pooled, as Kaggle scores)."""
    squared = np.square(predicted_px - true_px) * mask
    sums = squared.reshape(len(mask), -1, 2).sum(axis=(0, 2))
    counts = mask.reshape(len(mask), -1, 2).sum(axis=(0, 2))
    return {name: (float(np.sqrt(s / c)) if c else None) for name, s, c in zip(KEYPOINTS, sums, counts)}
