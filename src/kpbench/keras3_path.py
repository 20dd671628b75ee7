"""The model stage on Keras 3 (JAX backend), for machines with a GPU but no TensorFlow.

TensorFlow's GPU build needs CUDA 12 libraries (several GB of wheels); a machine that offers only
CUDA 13 and small wheel transfers can still run JAX. The architecture, target packing and FLOP
count come from kpbench.model; only the masked loss and the exact epoch metrics are written again,
in keras.ops, because kpbench.model's are TensorFlow code. Importing this module never imports
TensorFlow (unless KERAS_BACKEND names it, as the tests do to compare both versions).
"""

import keras
from keras import ops

from kpbench import model as _model
from kpbench.model import CENTRE, N_TARGETS, _split


def build_model(precision="float32"):
    """kpbench.model's network, made of Keras 3 layers."""
    return _model.build_model(precision, keras)


def describe_model():
    return _model.describe_model(keras)


def masked_mse(y_true, y_pred):
    """Mean squared error over the present targets only, per example (as kpbench.model.masked_mse)."""
    targets, mask = _split(y_true)
    squared = ops.square(y_pred - targets) * mask
    return ops.sum(squared, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)


class _MaskedSum(keras.metrics.Metric):
    """Accumulates a masked sum and its count over the whole epoch, so the value is exact rather
    than an average of per-batch values (as kpbench.model's metrics)."""

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


def compile_model(model, learning_rate, pck_radius_px, jit_compile=True):
    """Adam on the masked loss with the exact epoch metrics, as kpbench.model.compile_model. On JAX
    the step is always compiled with XLA unless `jit_compile` is False (then it runs op by op)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=masked_mse,
                  metrics=[RMSE(), MAE(), PCK(pck_radius_px)], jit_compile=jit_compile)
    return model
