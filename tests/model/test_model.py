import numpy as np
import pytest
import tensorflow as tf

from kpbench import KpbenchError
from kpbench.forecast.perf_model import layer_costs
from kpbench.model.objectives import CENTRE, MAE, PCK, RMSE, masked_mse, pack_targets, to_pixels
from kpbench.model.registry import MODEL_NAMES, MODELS, REFERENCE_PARAMETERS, build_model, describe_model, layer_table


def test_the_registry_names_each_built_in_model_once():
    assert MODEL_NAMES == tuple(MODELS) == ("reference_cnn", "separable_cnn")
    with pytest.raises(KpbenchError, match="reference_cnn, separable_cnn"):
        build_model("resnet", "float32")


def test_reference_model_has_the_original_studys_parameter_count():
    model = build_model("reference_cnn", "float32")
    assert model.count_params() == REFERENCE_PARAMETERS == 7_266_494
    assert model.output_shape == (None, 30)
    convs = [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert convs == [32, 32, 64, 64, 96, 96, 128, 128, 256, 256, 512, 512]


def test_model_description_matches_the_model():
    description = describe_model("reference_cnn")
    assert description["name"] == "reference_cnn" and description["parameters"] == 7_266_494
    assert sum(row["parameters"] for row in description["layers"]) == 7_266_494
    first = description["layers"][0]
    assert first["output_shape"] == [96, 96, 32]
    # 3x3 conv, 1 input channel, 32 filters on 96x96: 2 * 9 * 1 * 32 * 96 * 96 FLOPs.
    assert first["flops"] == 2 * 9 * 32 * 96 * 96
    assert description["training_flops_per_image"] == 3 * description["forward_flops_per_image"]


def test_the_separable_model_keeps_the_interface_and_counts_depthwise_and_pointwise_flops():
    model = build_model("separable_cnn", "float32")
    assert model.input_shape == (None, 96, 96, 1) and model.output_shape == (None, 30)
    assert model.layers[-1].dtype == "float32"
    description = describe_model("separable_cnn")
    layers = {row["name"]: row for row in description["layers"]}
    assert description["parameters"] == sum(row["parameters"] for row in description["layers"]) == 2_939_463
    # block1_conv1, 1 -> 32 channels on 96x96: a 3x3 depthwise filter (9 weights), a 1x1 pointwise
    # convolution (32 weights) and 32 biases; FLOPs 2 x 9 x 1 x 96 x 96 depthwise + 2 x 1 x 32 x 96 x 96 pointwise.
    first = layers["block1_conv1"]
    assert first["type"] == "SeparableConv2D" and first["output_shape"] == [96, 96, 32]
    assert first["parameters"] == 9 + 32 + 32
    assert first["flops"] == 2 * 9 * 1 * 96 * 96 + 2 * 1 * 32 * 96 * 96 == 755_712
    # block1_conv2, 32 -> 32: 2 x 9 x 32 x 96 x 96 + 2 x 32 x 32 x 96 x 96.
    assert layers["block1_conv2"]["flops"] == 2 * 9 * 32 * 9216 + 2 * 32 * 32 * 9216 == 24_182_784
    assert layers["block1_conv2"]["parameters"] == 9 * 32 + 32 * 32 + 32
    # head_conv1 on the 3x3 map after five poolings, 256 -> 512.
    assert layers["head_conv1"]["output_shape"] == [3, 3, 512]
    assert layers["head_conv1"]["flops"] == 2 * 9 * 256 * 9 + 2 * 256 * 512 * 9
    assert layers["dense"]["flops"] == 2 * 3 * 3 * 512 * 512
    # The compute profile differs: an eighth of the reference's FLOPs per image, and a third of its
    # FLOPs per parameter (the dense head's 2.4 M parameters, used once per image, now hold most of them).
    reference = describe_model("reference_cnn")
    assert description["training_flops_per_image"] == 3 * description["forward_flops_per_image"] == 3 * 104_701_440
    assert reference["forward_flops_per_image"] / description["forward_flops_per_image"] > 7.5
    assert (reference["forward_flops_per_image"] / reference["parameters"]
            > 3 * description["forward_flops_per_image"] / description["parameters"])


def test_a_depthwise_convolution_counts_one_filter_per_channel_and_multiplier():
    import tf_keras as keras

    model = keras.Sequential([keras.Input(shape=(8, 8, 4)),
                              keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")])
    row = layer_table(model)[0]
    # 4 channels x 2 filters each, 3x3, valid padding: a 6x6x8 output; 72 weights and 8 biases.
    assert row["type"] == "DepthwiseConv2D" and row["output_shape"] == [6, 6, 8]
    assert row["parameters"] == 9 * 4 * 2 + 8
    assert row["flops"] == 2 * 9 * 4 * 2 * 6 * 6


def test_the_performance_model_costs_a_separable_layer_from_its_row():
    description = describe_model("separable_cnn")
    rows = {r["name"]: r for r in layer_costs(description["layers"], batch_size=64)}
    first = rows["block1_conv1"]
    # Forward reads the 96x96x1 image and writes 96x96x32 activations (float32), and its 73 weights
    # are read once per batch of 64; backward reads the output gradient and the saved input, writes
    # the input gradient, reads the weights and writes their gradients.
    assert first["forward_flops"] == 755_712 and first["backward_flops"] == 2 * 755_712
    assert first["forward_bytes"] == pytest.approx(4 * (9216 + 294_912) + 73 * 4 / 64)
    assert first["backward_bytes"] == pytest.approx(4 * (294_912 + 2 * 9216) + 2 * 73 * 4 / 64)


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


def test_the_metrics_table_names_what_keras_logs():
    """kpbench.core.metrics maps history columns to Keras' log names; the compiled metrics must carry them."""
    from kpbench.core.metrics import METRICS
    from kpbench.model.objectives import objectives

    made = objectives()
    names = {made["RMSE"]().name, made["MAE"]().name, made["PCK"](3.0).name}
    assert names == {metric.keras[len("val_"):] for metric in METRICS if metric.keras}


def test_every_pipeline_fit_and_predict_read_runs_without_tf_data_autotuning():
    """tf.data's autotuning thread held each iterator's teardown until its next wake-up (up to 60 s after the
    last epoch; bench/RESULTS.md §13): every dataset kpbench hands Keras has it off, and reads what it was given."""
    from kpbench.train.inputs import distributed_datasets, fit_feed, prediction_feed

    rng = np.random.default_rng(0)
    x = rng.random((20, 96, 96, 1), dtype=np.float32)
    packed = pack_targets(rng.uniform(10, 86, (20, 30)).astype(np.float32), np.ones((20, 30), bool))
    arrays = {"x_train": x, "y_train": packed, "x_val": x[:8], "y_val": packed[:8]}
    one = fit_feed("tf", None, 1, arrays, 8, seed=0)
    shards = distributed_datasets(tf.distribute.get_strategy(), x, packed, x, packed, 4, seed=0)
    predict = prediction_feed("tf", x[:8], 8)["x"]
    for dataset in (one["x"], one["validation_data"], shards["x"], shards["validation_data"], predict):
        assert dataset.options().autotune.enabled is False
    assert one["steps_per_epoch"] == 3 and sum(len(b[0]) for b in one["x"].take(3)) == 20
    assert np.array_equal(np.concatenate(list(predict.as_numpy_iterator())), x[:8])
    assert prediction_feed("keras3-jax", x, 8) == {"x": x, "batch_size": 8}
