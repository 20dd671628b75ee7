import numpy as np
import pytest
import tensorflow as tf

from kpbench.model import (CENTRE, MAE, PCK, REFERENCE_PARAMETERS, RMSE, build_model, describe_model,
                           masked_mse, pack_targets, to_pixels)


def test_reference_model_has_the_original_studys_parameter_count():
    model = build_model()
    assert model.count_params() == REFERENCE_PARAMETERS == 7_266_494
    assert model.output_shape == (None, 30)
    convs = [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert convs == [32, 32, 64, 64, 96, 96, 128, 128, 256, 256, 512, 512]


def test_model_description_matches_the_model():
    description = describe_model()
    assert description["parameters"] == 7_266_494
    assert sum(row["parameters"] for row in description["layers"]) == 7_266_494
    first = description["layers"][0]
    assert first["output_shape"] == [96, 96, 32]
    # 3x3 conv, 1 input channel, 32 filters on 96x96: 2 * 9 * 1 * 32 * 96 * 96 FLOPs.
    assert first["flops"] == 2 * 9 * 32 * 96 * 96
    assert description["training_flops_per_image"] == 3 * description["forward_flops_per_image"]


def _batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(5, 90, (n, 30)).astype("float32")
    mask = np.repeat(rng.random((n, 15)) < 0.5, 2, axis=1)
    mask[:, :2] = True
    return pixels, mask


def test_masked_loss_ignores_missing_targets():
    pixels, mask = _batch()
    y = pack_targets(pixels, mask)
    prediction = np.random.default_rng(1).normal(0, 0.3, (8, 30)).astype("float32")
    loss = masked_mse(tf.constant(y), tf.constant(prediction)).numpy()
    normalised = (pixels - CENTRE) / CENTRE
    expected = ((prediction - normalised) ** 2 * mask).sum(axis=1) / mask.sum(axis=1)
    assert np.allclose(loss, expected, rtol=1e-5)
    # Whatever the model predicts where a label is missing, the loss does not change.
    changed = prediction.copy()
    changed[~mask] += 100.0
    assert np.allclose(masked_mse(tf.constant(y), tf.constant(changed)).numpy(), loss)
    # A row with no labels at all contributes zero, not NaN.
    empty = pack_targets(pixels[:1], np.zeros((1, 30), bool))
    assert masked_mse(tf.constant(empty), tf.constant(prediction[:1])).numpy()[0] == 0.0


def test_metrics_are_exact_over_several_batches_in_pixels():
    pixels, mask = _batch(n=10)
    predicted_px = pixels + np.random.default_rng(2).normal(0, 3, pixels.shape).astype("float32")
    y = pack_targets(pixels, mask)
    prediction = (predicted_px - CENTRE) / CENTRE
    metrics = [RMSE(), MAE(), PCK(radius_px=3.0)]
    for part in (slice(0, 3), slice(3, 10)):  # uneven batches: averaging per batch would be wrong
        for metric in metrics:
            metric.update_state(tf.constant(y[part]), tf.constant(prediction[part]))
    error = (predicted_px - pixels)[mask]
    assert metrics[0].result().numpy() == pytest.approx(np.sqrt(np.mean(error ** 2)), rel=1e-4)
    assert metrics[1].result().numpy() == pytest.approx(np.mean(np.abs(error)), rel=1e-4)
    distance = np.hypot(*(predicted_px - pixels).reshape(10, 15, 2).transpose(2, 0, 1))
    present = mask[:, 0::2]
    assert metrics[2].result().numpy() == pytest.approx(np.mean(distance[present] <= 3.0), rel=1e-5)
    assert np.allclose(to_pixels(prediction), predicted_px, atol=1e-4)
