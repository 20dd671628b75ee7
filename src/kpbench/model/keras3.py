"""The model stage on Keras 3 (JAX backend), for machines with a GPU but no TensorFlow.

TensorFlow's GPU build needs CUDA 12 libraries (several GB of wheels); a machine that offers only
CUDA 13 and small wheel transfers can still run JAX. The architectures and FLOP counts come from
kpbench.model.registry, the target packing, masked loss and exact epoch metrics from kpbench.model.objectives,
all made here for Keras 3. Importing this module never imports TensorFlow (unless KERAS_BACKEND
names it, as the tests do to compare both versions).
"""

import keras

from kpbench.model import objectives as _objectives
from kpbench.model import registry as _model

_OBJECTIVES = _objectives.objectives(keras)
masked_mse, RMSE, MAE, PCK = (_OBJECTIVES[name] for name in ("masked_mse", "RMSE", "MAE", "PCK"))


def build_model(name, precision):
    """kpbench.model.registry's network `name`, made of Keras 3 layers."""
    return _model.build_model(name, precision, keras)


def describe_model(name):
    return _model.describe_model(name, keras)


def compile_model(model, learning_rate, pck_radius_px, jit_compile):
    """kpbench.model.objectives.compile_model for Keras 3 (on JAX, XLA unless `jit_compile` is False: then
    it runs op by op)."""
    return _objectives.compile_model(model, learning_rate, pck_radius_px, jit_compile, keras)
