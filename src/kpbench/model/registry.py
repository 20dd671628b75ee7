"""Model stage: the registry of built-in keypoint models, and the description (layer table,
parameters, FLOPs) the paper and the performance model read.

Every model takes a 96x96x1 image and ends in the 30 outputs kpbench.model.objectives trains and scores.
The names import without TensorFlow (the configuration is checked against them before anything
trains); each builder makes its layers from whichever Keras module it is given: tf-keras (the
default), or Keras 3 for kpbench.model.keras3 on machines without TensorFlow.

To add a model: write a builder `(keras) -> keras.Model` below and register it in MODELS; if it
uses a layer type whose FLOPs `_forward_flops` does not count yet, count them there.
"""

import numpy as np

from kpbench import KpbenchError
from kpbench.data.kaggle_format import IMAGE_SIZE
from kpbench.model.objectives import N_TARGETS, tf_keras

BLOCK_FILTERS = (32, 64, 96, 128, 256)
HEAD_FILTERS = 512
DENSE_UNITS = 512
DROPOUT = 0.05
REFERENCE_PARAMETERS = 7_266_494   # the original study's model.summary() total
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def _reference_cnn(keras):
    """The original study's CNN: five [Conv-Conv-BN-MaxPool] blocks, Conv 512 x2 + BN, Dense 512,
    Dropout, Dense 30."""
    return _keypoint_network(keras, "reference_cnn", keras.layers.Conv2D)


def _separable_cnn(keras):
    """The reference with each 3x3 convolution depthwise-separable (a 3x3 filter per channel, then a
    1x1 convolution across channels, as MobileNet does): the same depth, widths and head with 40 %
    of the parameters, an eighth of the FLOPs per image and a third of the FLOPs per parameter, so
    more of its step is memory traffic than arithmetic."""
    return _keypoint_network(keras, "separable_cnn", keras.layers.SeparableConv2D)


def _keypoint_network(keras, name, conv):
    """The reference's layout, with `conv` as its 3x3 convolution."""
    layers = [keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="image")]
    for block, filters in enumerate(BLOCK_FILTERS, start=1):
        layers += [
            conv(filters, 3, padding="same", activation="relu", name=f"block{block}_conv1"),
            conv(filters, 3, padding="same", activation="relu", name=f"block{block}_conv2"),
            keras.layers.BatchNormalization(name=f"block{block}_bn"),
            keras.layers.MaxPooling2D(2, name=f"block{block}_pool"),
        ]
    layers += [
        conv(HEAD_FILTERS, 3, padding="same", activation="relu", name="head_conv1"),
        conv(HEAD_FILTERS, 3, padding="same", activation="relu", name="head_conv2"),
        keras.layers.BatchNormalization(name="head_bn"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(DENSE_UNITS, activation="relu", name="dense"),
        keras.layers.Dropout(DROPOUT, name="dropout"),
        # float32 under a mixed policy, so the loss and metrics see full-precision coordinates.
        keras.layers.Dense(N_TARGETS, dtype="float32", name="keypoints"),
    ]
    return keras.Sequential(layers, name=name)


MODELS = {"reference_cnn": _reference_cnn, "separable_cnn": _separable_cnn}
MODEL_NAMES = tuple(MODELS)
REFERENCE_MODEL = "reference_cnn"  # the original study's: its published rows were measured on it


def build_model(name, precision, keras=None):
    """The registered model `name`, made of `keras`'s layers (tf-keras unless given Keras 3).

    With a mixed precision the layers compute in bfloat16 or float16 but keep float32 weights.
    """
    if name not in MODELS:
        raise KpbenchError(f"model must be one of {', '.join(MODEL_NAMES)}, not {name!r}")
    if precision not in PRECISIONS:
        raise KpbenchError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    keras = keras or tf_keras()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        return MODELS[name](keras)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def layer_table(model, keras=None):
    """One row per layer (name, type, output shape, parameters, forward FLOPs per image) for the paper;
    `keras` is the module the model was built with (tf-keras unless given)."""
    keras = keras or tf_keras()
    rows = []
    for layer in model.layers:
        shape = tuple(int(d) for d in layer.output.shape[1:])
        rows.append({"name": layer.name, "type": type(layer).__name__, "output_shape": list(shape),
                     "parameters": int(layer.count_params()), "flops": _forward_flops(keras, layer, shape)})
    return rows


def _forward_flops(keras, layer, output_shape):
    """Multiply-adds x2 of the layers that dominate compute; element-wise layers count as zero.

    A depthwise convolution filters each input channel on its own (`depth_multiplier` filters
    each); a separable one follows that with a 1x1 (pointwise) convolution to its filters. The
    depthwise and separable checks come first: some Keras versions derive them from Conv2D.
    """
    if isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
        kh, kw = layer.kernel_size
        height, width = output_shape[:2]
        depthwise_channels = int(layer.input.shape[-1]) * layer.depth_multiplier
        flops = 2 * kh * kw * depthwise_channels * height * width
        if isinstance(layer, keras.layers.SeparableConv2D):
            flops += 2 * depthwise_channels * output_shape[2] * height * width
        return int(flops)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        in_channels = int(layer.input.shape[-1])
        return int(2 * kh * kw * in_channels * output_shape[0] * output_shape[1] * output_shape[2])
    if isinstance(layer, keras.layers.Dense):
        return int(2 * int(layer.input.shape[-1]) * layer.units)
    return 0


def describe_model(name, keras=None):
    """Everything the paper says about model `name`, computed from the model itself (built with
    tf-keras unless given another Keras module)."""
    keras = keras or tf_keras()
    model = build_model(name, "float32", keras)
    table = layer_table(model, keras)
    forward = sum(row["flops"] for row in table)
    return {
        "name": model.name,
        "description": " ".join(MODELS[name].__doc__.split()),
        "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "forward_flops_per_image": forward,
        # Backpropagation costs about twice the forward pass (gradients for inputs and weights).
        "training_flops_per_image": 3 * forward,
        "layers": table,
        "keras": f"{keras.__name__.replace('_', '-')} {keras.__version__}",
    }
