"""kpbench: which machine trains the facial-keypoint CNN fastest, and which cheapest, to a given quality."""

import os
from pathlib import Path

# Keras 3's model.fit breaks under MultiWorkerMirroredStrategy (keras-team/keras#20585); legacy
# tf-keras works, so every process that imports kpbench uses it, before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# Every path computed from the code is found from here: the package (what an EC2 instance receives
# as its bundle) and the checkout it sits in (config/, the git history).
PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parents[1]


class KpbenchError(Exception):
    """An error the user can act on; the CLI prints it without a traceback."""


# oneDNN's optimisations are read once, when TensorFlow is imported: chosen here from the CPU's ISA.
from kpbench.machine.cpu_settings import choose_tensorflow_settings  # noqa: E402

choose_tensorflow_settings()
