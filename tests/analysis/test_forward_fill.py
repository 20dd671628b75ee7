"""The embedded default ordered like the real file, the original study's procedure as a reference path,
and what forward fill costs against the synthetic faces' true keypoints."""

import math

import numpy as np
import pytest

from kpbench.analysis.forward_fill import invented_labels, measure
from kpbench.core.files import read_json, write_json
from kpbench.data.csv_reader import load_training_csv
from kpbench.data.synthetic import missing_label_mask, write_synthetic_csvs
from kpbench.model import original_study


def test_rows_come_in_the_real_files_blocks_and_forward_fill_leaves_no_blank():
    mask = missing_label_mask(7049, np.random.default_rng(0))
    complete = mask.all(axis=1)
    assert abs(int(complete.sum()) - 2140) <= 10
    assert np.flatnonzero(complete).max() < np.flatnonzero(~complete).min()
    assert not np.isnan(original_study.forward_fill(np.where(mask, 1.0, np.nan))).any()
    # The old random order started with a partial row: forward fill then leaves NaN at the top.
    shuffled = mask[np.random.default_rng(1).permutation(len(mask))]
    assert np.isnan(original_study.forward_fill(np.where(shuffled, 1.0, np.nan))).any()


def test_truth_file_matches_the_csv_wherever_it_has_a_value(raw_dir):
    _, targets, mask = load_training_csv(raw_dir / "training.csv")
    with np.load(raw_dir / "truth.npz") as archive:
        truth = archive["keypoints"]
    assert truth.shape == targets.shape and not np.isnan(truth).any()
    np.testing.assert_allclose(targets[mask], truth[mask], atol=1e-4)
    assert (~mask).any()  # there are blanks whose truth only truth.npz knows


def test_original_procedure_trains_to_a_finite_loss_on_the_embedded_default(tmp_path):
    write_synthetic_csvs(tmp_path, n_train=40, n_test=1, seed=2013)
    images, targets = original_study.load_training(tmp_path / "training.csv")
    assert images.shape == (40, 96, 96, 1) and not np.isnan(targets).any()
    _, history = original_study.train(tmp_path / "training.csv", epochs=1, batch_size=8)
    assert all(math.isfinite(loss) for loss in history.history["loss"] + history.history["val_loss"])


def test_invented_labels_are_counted_and_scored_against_the_truth():
    truth = np.array([[10.0, 10.0], [13.0, 14.0], [20.0, 20.0]])
    mask = np.array([[True, True], [False, False], [True, True]])
    result = invented_labels(original_study.forward_fill(np.where(mask, truth, np.nan)), mask, truth)
    assert result["invented"] == 2 and result["invented_share"] == pytest.approx(2 / 6)
    assert result["invented_error_px"] == pytest.approx(5.0)
    assert result["invented_rmse_px"] == pytest.approx(math.sqrt((9 + 16) / 2))
    assert result["left_blank"] == 0


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The stage on tiny data, against a masked 'run' whose predictions are the truth plus 1 px."""
    from kpbench.data.preprocess import load_dataset, preprocess

    folder = tmp_path_factory.mktemp("ff")
    write_synthetic_csvs(folder, n_train=48, n_test=2, seed=7)
    preprocess(folder, folder / "dataset.npz", folder / "stats.json", folder / "samples.npz", 0.25, 0)
    data = load_dataset(folder / "dataset.npz")
    with np.load(folder / "truth.npz") as archive:
        truth = archive["keypoints"]
    run_dir = folder / "run"
    run_dir.mkdir()
    val_index = np.arange(len(data["val_rows"]))
    np.savez(run_dir / "predictions.npz", train_index=np.arange(32), val_index=val_index,
             val_predicted_px=truth[data["val_rows"]] + 1.0)
    write_json(run_dir / "run.json", {"instance": {"name": "local"}, "repeat": 1, "seed": 1,
                                      "training": {"precision": "float32", "learning_rate": 0.001,
                                                   "pck_radius_px": 3.0, "scale_learning_rate": True,
                                                   "warmup_epochs": 2, "jit_compile": False},
                                      "workload": {"model": "reference_cnn", "epochs": 1, "batch_size": 8}})
    out = folder / "forward_fill.json"
    measure(folder / "training.csv", out, "synthetic", folder / "truth.npz", folder / "dataset.npz",
            run_dir / "run.json")
    return read_json(out), folder


def test_forward_fill_stage_writes_the_invented_share_error_and_both_rmses(measured):
    result, _ = measured
    assert result["ground_truth"] and result["left_blank"] == 0
    assert 0 < result["invented_share"] < 1 and result["invented_error_px"] > 0
    assert result["workload"] == {"model": "reference_cnn", "epochs": 1, "batch_size": 8, "train_images": 32,
                                  "validation_images": 12}
    masked, filled = result["models"]["masked"], result["models"]["forward_filled"]
    assert masked["blank_rmse_px"] == pytest.approx(1.0) and masked["labelled_rmse_px"] == pytest.approx(1.0)
    assert math.isfinite(filled["blank_rmse_px"]) and math.isfinite(filled["labelled_rmse_px"])
    assert math.isfinite(filled["final_train_loss"])
    assert result["validation"]["blank_coordinates"] > 0
    labels_only = result["labels_only"]
    assert set(labels_only) == {"forward_filled", "masked"}
    assert all(math.isfinite(labels_only[label][key]) for label in labels_only
               for key in ("blank_rmse_px", "labelled_rmse_px"))


def test_the_labels_only_comparison_changes_nothing_but_the_labels(measured, tmp_path, monkeypatch):
    """Given the masked labels in place of the forward-filled ones, the two trainings are the same
    training: equal scores, so any difference they show is the labels'."""
    from kpbench.data.csv_reader import load_training_csv
    from kpbench.model import original_study

    _, folder = measured
    monkeypatch.setattr(original_study, "forward_filled_targets", lambda path: load_training_csv(path)[1])
    out = tmp_path / "same.json"
    measure(folder / "training.csv", out, "synthetic", folder / "truth.npz", folder / "dataset.npz",
            folder / "run" / "run.json")
    same = read_json(out)["labels_only"]
    for key in ("blank_rmse_px", "labelled_rmse_px"):
        assert same["forward_filled"][key] == pytest.approx(same["masked"][key])


def test_without_ground_truth_only_the_invented_share_is_written(measured, tmp_path):
    _, folder = measured
    measure(folder / "training.csv", tmp_path / "ff.json", "kaggle")
    result = read_json(tmp_path / "ff.json")
    assert not result["ground_truth"] and "synthetic" in result["reason"]
    assert result["invented_share"] > 0 and result["invented_error_px"] is None


def test_the_paper_section_renders_with_without_and_before_the_measurement(measured, tmp_path):
    from kpbench.paper.render import make_environment
    from workflow import REPO

    result, folder = measured
    measure(folder / "training.csv", tmp_path / "ff.json", "kaggle")
    template = make_environment(REPO / "paper" / "templates").get_template("sections/forward_fill.tex.j2")
    text = template.render(forward_fill=result)
    assert r"\label{tab:forward-fill}" in text and r"{forward_fill}" in text
    assert f"{result['models']['masked']['blank_rmse_px']:.2f}" in text
    assert "cannot be measured here" in template.render(forward_fill=read_json(tmp_path / "ff.json"))
    assert "carry no such" in template.render(forward_fill=None)


def test_the_paper_section_states_the_result_it_finds(measured):
    """Whatever the runs show, the section says it: a cost of forward fill only where the study's
    procedure loses more on the blank keypoints than the masked model does."""
    from kpbench.paper.render import make_environment
    from workflow import REPO

    result, _ = measured
    template = make_environment(REPO / "paper" / "templates").get_template("sections/forward_fill.tex.j2")
    models = result["models"]
    for blank_filled, finding in ((models["masked"]["blank_rmse_px"], "no} cost of training on forward-filled labels"),
                                  (100.0, "adding")):
        filled = {**models["forward_filled"], "blank_rmse_px": blank_filled,
                  "labelled_rmse_px": models["masked"]["labelled_rmse_px"]}
        text = template.render(forward_fill={**result, "models": {**models, "forward_filled": filled}})
        assert finding in text and "What forward fill costs" not in text


def test_the_fills_cost_is_set_against_the_spread_of_our_seeds(measured):
    """Each forward-fill figure is one training: the section sets its cost beside how far our repeats,
    which differ only in their seed, ended apart, and says whether a seed alone could make it."""
    import re

    from kpbench.paper.render import make_environment
    from workflow import REPO

    result, _ = measured
    template = make_environment(REPO / "paper" / "templates").get_template("sections/forward_fill.tex.j2")
    lo = result["labels_only"]
    cost = lo["forward_filled"]["blank_rmse_px"] - lo["masked"]["blank_rmse_px"]
    for spread, verdict in ((abs(cost) + 1.0, "within"), (0.0, "larger than that spread")):
        row = {"instance": "local", "repeats": 3, "workers": 1, "val_rmse_px_min": 5.0, "val_rmse_px_max": 5.0 + spread}
        text = " ".join(template.render(forward_fill=result, ours=[row]).split())
        assert "local's 3 runs, which differ only in their seed" in text
        found = re.search(r"The difference on the blank keypoints, \\num\{(-?[\d.]+)\}~px, is (larger than that spread|within)", text)
        assert found and float(found.group(1)) == pytest.approx(cost, abs=0.006) and found.group(2) == verdict
