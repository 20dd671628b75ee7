"""What the original study's forward fill costs, measured where the truth is known.

The study filled every missing label with the row above's value. On the real file it could not tell
how far those invented labels lie from the faces, nor what training on them does to the keypoints the
file leaves blank: it had no ground truth. Synthetic faces have one (truth.npz beside the CSVs), so
both are measured here: the share of labels forward fill invents and their error in pixels, from
training.csv alone; and, on the validation rows, the RMSE against the truth on the keypoints the CSV
leaves blank and on those it labels, of the study's procedure (kpbench.model.original_study: forward fill, plain
MSE) against kpbench's masked model. The masked model is a finished pipeline run, whose predictions
and row indices are read rather than trained again; the forward-filled model is trained here on that
run's very training rows, with its seed, epochs and batch size.
"""

import time
from pathlib import Path

import numpy as np

from kpbench.core.files import read_json, write_json
from kpbench.core.layout import KEYPOINTS_FILE
from kpbench.core.run_reader import run_model
from kpbench.data.csv_reader import load_training_csv
from kpbench.data.preprocess import load_dataset
from kpbench.model.objectives import per_keypoint_rmse, rmse_px
from kpbench.train.inputs import prediction_feed, training_feed


def invented_labels(filled, mask, truth=None):
    """How many coordinates forward fill invents (blank in the CSV, filled after), their share of all
    coordinates, how many it leaves blank, and with the truth their error in pixels: mean distance per
    invented keypoint and RMSE per coordinate."""
    invented = ~mask & ~np.isnan(filled)
    result = {"rows": int(len(mask)), "coordinates": int(mask.size), "labelled": int(mask.sum()),
              "invented": int(invented.sum()), "invented_share": float(invented.mean()),
              "left_blank": int(np.isnan(filled).sum()), "invented_error_px": None, "invented_rmse_px": None}
    if truth is not None and invented.any():
        error = filled - truth
        both = invented[:, 0::2] & invented[:, 1::2]
        result["invented_error_px"] = float(np.hypot(error[:, 0::2], error[:, 1::2])[both].mean())
        result["invented_rmse_px"] = rmse_px(filled, truth, invented)
    return result


def _scores(predicted_px, true_px, mask):
    return {"blank_rmse_px": rmse_px(predicted_px, true_px, ~mask),
            "labelled_rmse_px": rmse_px(predicted_px, true_px, mask),
            "blank_rmse_per_keypoint_px": per_keypoint_rmse(true_px, predicted_px, ~mask)}


def _progress(keras, procedure, epochs):
    """One line per epoch for the person watching (stderr reaches Snakemake's terminal; see the rule)."""
    import sys

    return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(
        f"forward fill ({procedure}): epoch {epoch + 1}/{epochs}, loss {logs['loss']:.4g}", file=sys.stderr, flush=True))


def train_forward_filled(images, targets, workload, seed, model_name):
    """The study's procedure on the given rows: forward-filled pixel targets, plain `fit`, MSE; the
    same rows are validated by the caller, so Keras holds none out."""
    import tf_keras as keras

    from kpbench.model import original_study

    epochs = int(workload["epochs"])
    progress = _progress(keras, "the original study's procedure", epochs)
    keras.utils.set_random_seed(seed)
    model = original_study.compiled_model(model_name)  # the masked run's model: like with like
    history = original_study.fit(model, images, targets, epochs=epochs, batch_size=int(workload["batch_size"]),
                           validation_split=0.0, callbacks=[progress], verbose=2)
    return model, history.history["loss"]


def train_labels_only(images, targets_px, mask, run, label):
    """kpbench's own procedure (the run's model, precision, learning rate, masked loss, seeded tf.data
    feed, epochs and batch) on the labels given: called on forward-filled and on masked labels of the
    same rows, the labels are the one thing that differs. Returns the validation predictor."""
    import tf_keras as keras

    from kpbench.model.objectives import compile_model, pack_targets
    from kpbench.model.registry import build_model
    from kpbench.train.multi_worker import learning_rate

    training, workload = run["training"], run["workload"]
    seed, batch_size, epochs = int(run["seed"]), int(workload["batch_size"]), int(workload["epochs"])
    rate, _ = learning_rate(keras, training, 1, -(-len(images) // batch_size))
    progress = _progress(keras, f"kpbench's procedure, {label} labels", epochs)
    keras.utils.set_random_seed(seed)
    model = compile_model(build_model(run_model(run), training.get("precision", "float32"), keras), rate,
                          float(training["pck_radius_px"]), False, keras)
    model.fit(**training_feed(images, pack_targets(np.nan_to_num(targets_px), mask), batch_size, seed),
              epochs=epochs, callbacks=[progress], verbose=0)
    return model


def _labels_only(images, filled, targets, mask, val_images, val_truth, val_mask, run):
    """Forward-filled against masked labels, each trained by kpbench's own procedure."""
    from kpbench.model.objectives import to_pixels

    batch_size, scores = int(run["workload"]["batch_size"]), {}
    for label, (labels, present) in (("forward_filled", (filled, ~np.isnan(filled))), ("masked", (targets, mask))):
        start = time.time()
        model = train_labels_only(images, labels, present, run, label.replace("_", "-"))
        train_s = time.time() - start
        predicted_px = to_pixels(model.predict(**prediction_feed("tf", val_images, batch_size), verbose=0))
        scores[label] = {**_scores(predicted_px, val_truth, val_mask), "train_s": train_s}
    return scores


def measure(training_csv, out_path, source, truth_path=None, dataset_path=None, run_path=None):
    """Write the measurement as JSON to `out_path`; without a ground truth (any source but synthetic)
    only the share of invented labels, and a line saying why the rest cannot be measured."""
    from kpbench.model.original_study import forward_filled_targets

    filled = forward_filled_targets(training_csv)
    _, targets, mask = load_training_csv(training_csv)
    if truth_path is None:
        write_json(out_path, {"source": source, "ground_truth": False,
                              "reason": "only synthetic faces have true keypoints where the CSV is blank",
                              **invented_labels(filled, mask)})
        return None
    with np.load(truth_path) as archive:
        truth = archive["keypoints"]
    run = read_json(run_path)
    with np.load(Path(run_path).parent / KEYPOINTS_FILE) as archive:
        train_index, val_index = archive["train_index"], archive["val_index"]
        masked_px = archive["val_predicted_px"]
    data = load_dataset(dataset_path)
    train_rows, val_rows = data["train_rows"][train_index], data["val_rows"][val_index]
    start = time.time()
    model, losses = train_forward_filled(data["train_images"][train_index], filled[train_rows],
                                         run["workload"], int(run["seed"]), run_model(run))
    train_s = time.time() - start
    filled_px = model.predict(**prediction_feed("tf", data["val_images"][val_index], int(run["workload"]["batch_size"])),
                              verbose=0)
    val_truth, val_mask = truth[val_rows], mask[val_rows]
    result = {
        "source": source, "ground_truth": True, **invented_labels(filled, mask, truth),
        "reference_run": {"instance": run["instance"]["name"], "repeat": run.get("repeat", 1),
                          "seed": run["seed"], "precision": run["training"].get("precision", "float32")},
        "workload": {"model": run_model(run), "epochs": int(run["workload"]["epochs"]),
                     "batch_size": int(run["workload"]["batch_size"]),
                     "train_images": len(train_rows), "validation_images": len(val_rows)},
        "validation": {"blank_coordinates": int((~val_mask).sum()), "labelled_coordinates": int(val_mask.sum()),
                       # the forward-filled labels themselves on the validation rows' blanks
                       "invented_rmse_per_keypoint_px": _scores(filled[val_rows], val_truth, val_mask)[
                           "blank_rmse_per_keypoint_px"]},
        "models": {
            "forward_filled": {**_scores(filled_px, val_truth, val_mask), "final_train_loss": float(losses[-1]),
                               "train_s": train_s},
            "masked": _scores(masked_px, val_truth, val_mask),
        },
        # The labels alone: kpbench's procedure on forward-filled and on masked labels of the same rows.
        "labels_only": _labels_only(data["train_images"][train_index], filled[train_rows], targets[train_rows],
                                    mask[train_rows], data["val_images"][val_index], val_truth, val_mask, run),
    }
    write_json(out_path, result)
    return result

