"""The model stage on Keras 3 (JAX backend), for machines with a GPU but no TensorFlow.

TensorFlow's GPU build needs CUDA 12 libraries (several GB of wheels); a machine that offers only
CUDA 13 and small wheel transfers can still run JAX. The architecture, target packing, FLOP
count, masked loss and exact epoch metrics all come from kpbench.model, made here for Keras 3.
Importing this module never imports TensorFlow (unless KERAS_BACKEND names it, as the tests do to compare both versions).
"""

import keras

from kpbench import model as _model

_OBJECTIVES = _model.objectives(keras)
masked_mse, RMSE, MAE, PCK = (_OBJECTIVES[name] for name in ("masked_mse", "RMSE", "MAE", "PCK"))


def build_model(precision="float32"):
    """kpbench.model's network, made of Keras 3 layers."""
    return _model.build_model(precision, keras)


def describe_model():
    return _model.describe_model(keras)


def compile_model(model, learning_rate, pck_radius_px, jit_compile=True):
    """kpbench.model.compile_model for Keras 3: on JAX the step is compiled with XLA unless
    `jit_compile` is False (then it runs op by op)."""
    return _model.compile_model(model, learning_rate, pck_radius_px, jit_compile, keras)
