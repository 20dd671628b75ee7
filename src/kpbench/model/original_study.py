"""The original study's training procedure, kept here once as the reference kpbench is measured by.

kpbench changes how the study trains (masked loss instead of forward fill, a vectorised reader,
tf.data); a comparison is only fair against the study's own procedure, not a paraphrase of it. This
is its script, unchanged except pandas 3's spelling `frame.ffill()`: read training.csv with pandas,
forward-fill every missing label from the row above, split each Image string in a Python loop and
scale it to [0, 1], train the same CNN (kpbench.model.registry.build_model) with Adam on plain MSE in pixels
by `model.fit` on NumPy arrays, batch 64, the last 10 % of the rows held out for validation.
The throughput and parsing benchmarks and the forward-fill measurement all call it.
"""

import numpy as np
import pandas as pd

from kpbench.data.kaggle_format import IMAGE_SIZE, TARGET_COLUMNS

BATCH_SIZE = 64
VALIDATION_SPLIT = 0.1


def forward_fill(targets):
    """The study's `df.ffill()` on the keypoint columns: a missing label takes the row above's value
    (NaN stays only above a column's first label); `targets` is (rows, 30) with NaN where missing."""
    return pd.DataFrame(targets).ffill().to_numpy(dtype=np.float64)


def read_training_csv(path):
    """training.csv as the study read it: the whole frame, forward-filled."""
    return pd.read_csv(path).ffill()


def forward_filled_targets(path):
    """The study's training targets: the 30 keypoint columns in pixels after forward fill."""
    return read_training_csv(path)[TARGET_COLUMNS].to_numpy(dtype=np.float64)


def load_training(path):
    """The study's arrays: images (rows, 96, 96, 1) in [0, 1] from a Python loop over the Image
    strings, and its forward-filled pixel targets (rows, 30)."""
    frame = read_training_csv(path)
    images = []
    for i in range(len(frame)):
        pixels = frame["Image"][i].split(" ")
        pixels = ["0" if x == "" else x for x in pixels]
        images.append(pixels)
    images = np.array(images, dtype="float").reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1) / 255.0
    return images, frame[TARGET_COLUMNS].to_numpy(dtype="float")


def compiled_model(name=None, keras=None):
    """The study's CNN (or another registered model, to compare like with like) compiled as the study
    compiled it: Adam (its defaults) on plain mean squared error; tf-keras unless given Keras 3."""
    from kpbench.model.registry import REFERENCE_MODEL, build_model

    model = build_model(name or REFERENCE_MODEL, "float32", keras)
    model.compile(optimizer="adam", loss="mse")
    return model


def fit(model, images, targets, epochs, batch_size=BATCH_SIZE, validation_split=VALIDATION_SPLIT,
        callbacks=None, verbose=0):
    """The study's `model.fit` on NumPy arrays; returns Keras' history."""
    return model.fit(images, targets, epochs=epochs, batch_size=batch_size,
                     validation_split=validation_split, callbacks=callbacks, verbose=verbose)


def train(path, epochs, batch_size=BATCH_SIZE, verbose=0):
    """The study's script end to end on a training.csv: (model, history)."""
    images, targets = load_training(path)
    model = compiled_model()
    return model, fit(model, images, targets, epochs, batch_size, verbose=verbose)
