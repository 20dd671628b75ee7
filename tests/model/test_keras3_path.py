"""The Keras 3 path (kpbench.model.keras3, for GPU machines without TensorFlow) against tf-keras.

CI has no JAX, but TensorFlow's wheel brings Keras 3: its side runs in a subprocess on Keras 3's
TensorFlow backend, so Keras 3's global state never meets tf-keras's in this process.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kpbench.machine.device_peaks import peak_for, resolve_gpu
from kpbench.model.objectives import CENTRE, MAE, PCK, RMSE, masked_mse, pack_targets
from kpbench.model.registry import MODEL_NAMES, describe_model

KERAS3_SIDE = """
import json, sys
import numpy as np
import keras
from kpbench.model import keras3 as k3
from kpbench.model.registry import MODEL_NAMES

data = np.load(sys.argv[1])
y, prediction = data["y"], data["prediction"]
metrics = [k3.RMSE(), k3.MAE(), k3.PCK(radius_px=3.0)]
for part in (slice(0, 3), slice(3, None)):
    for metric in metrics:
        metric.update_state(y[part], prediction[part])
half = k3.build_model("separable_cnn", "mixed_float16")
print(json.dumps({
    "descriptions": {name: k3.describe_model(name) for name in MODEL_NAMES},
    "loss": np.asarray(k3.masked_mse(y, prediction)).tolist(),
    "metrics": [float(metric.result()) for metric in metrics],
    "half_dtypes": [half.layers[0].compute_dtype, half.layers[-1].compute_dtype],
    "policy_after": keras.mixed_precision.global_policy().name,
}))
"""


def _run(code, *args, **env):
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_the_model_training_and_data_modules_import_without_tensorflow():
    loaded = _run("import sys, kpbench.model.registry, kpbench.train.run, kpbench.machine.detect, kpbench.data.sources, kpbench.data.preprocess, "
                  "kpbench.data.synthetic, kpbench.train.inputs, kpbench.train.multi_worker, kpbench.train.callbacks, kpbench.train.run_writer; "
                  "print(kpbench.model.registry.MODEL_NAMES, "
                  "sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    assert loaded == "('reference_cnn', 'separable_cnn') []"


def test_keras3_builds_the_same_network_and_scores_like_tf_keras(tmp_path):
    rng = np.random.default_rng(4)
    pixels = rng.uniform(5, 90, (10, 30)).astype("float32")
    mask = np.repeat(rng.random((10, 15)) < 0.5, 2, axis=1)
    mask[:, :2] = True
    mask[4] = False  # a row without labels
    y = pack_targets(pixels, mask)
    prediction = ((pixels + rng.normal(0, 3, pixels.shape) - CENTRE) / CENTRE).astype("float32")
    np.savez(tmp_path / "batch.npz", y=y, prediction=prediction)

    keras3 = json.loads(_run(KERAS3_SIDE, str(tmp_path / "batch.npz"), KERAS_BACKEND="tensorflow"))

    assert set(keras3["descriptions"]) == set(MODEL_NAMES)
    for name, description in keras3["descriptions"].items():
        tf_keras = describe_model(name)
        assert description["parameters"] == tf_keras["parameters"]
        assert description["layers"] == tf_keras["layers"]
        assert description["keras"].startswith("keras 3.")
    assert keras3["descriptions"]["reference_cnn"]["parameters"] == 7_266_494
    assert np.allclose(keras3["loss"], masked_mse(tf.constant(y), tf.constant(prediction)).numpy(), rtol=1e-6)
    assert keras3["loss"][4] == 0.0
    metrics = [RMSE(), MAE(), PCK(radius_px=3.0)]
    for metric in metrics:
        metric.update_state(tf.constant(y), tf.constant(prediction))
    assert keras3["metrics"] == pytest.approx([float(m.result().numpy()) for m in metrics], rel=1e-6)
    assert 0 < keras3["metrics"][2] < 1  # some keypoints within 3 px, some not: the radius matters
    assert keras3["half_dtypes"] == ["float16", "float32"] and keras3["policy_after"] == "float32"


def test_a_gpu_named_as_its_driver_reports_it_gets_its_datasheet_peak():
    h100 = resolve_gpu({"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    assert h100["device"] == "NVIDIA H100" and peak_for(h100, "mixed_float16") == 989.0
    # float32 runs as TensorFloat-32 on Hopper by default: its roof is the TF32 rate, not FP32's 67
    assert peak_for(resolve_gpu({"name": "NVIDIA H200"}), "float32") == 494.0
