"""kpbench: which machine trains the facial-keypoint CNN fastest, and which cheapest, to a given quality."""

import os

# Keras 3's model.fit breaks under MultiWorkerMirroredStrategy (keras-team/keras#20585); legacy
# tf-keras works, so every process that imports kpbench uses it, before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


class KpbenchError(Exception):
    """An error the user can act on; the CLI prints it without a traceback."""
