"""The original study's console logs as data: the Keras log parser on the real files and on broken
copies of them, the tracked tables they regenerate, and what the prediction takes from them."""

import gzip
import json
import shutil

import pytest

from kpbench import KpbenchError
from kpbench.analysis.keras_log import parse_log, read_log
from kpbench.analysis.original_logs import (
    distribution_check,
    extra_layers,
    instance_of,
    log_model,
    read_runs,
    write_parsed,
)
from kpbench.core.files import read_json
from workflow import REPO

LOGS = sorted((REPO / "config" / "original_study_logs").glob("*.log.gz"))


def _text(name):
    return gzip.decompress((REPO / "config" / "original_study_logs" / name).read_bytes()).decode()


@pytest.fixture(scope="module")
def parsed():
    return {instance_of(path): read_log(path) for path in LOGS}


def test_every_real_log_parses_to_100_epochs_with_its_published_totals(parsed):
    published = {line.split(",")[0]: line.split(",") for line in
                 (REPO / "config" / "original_study.csv").read_text().splitlines()[1:]}
    assert set(parsed) == {"c5.4xlarge", "g3s.xlarge", "g3.4xlarge", "g4dn.xlarge", "2x g4dn.xlarge",
                           "4x g4dn.xlarge"}
    for name, log in parsed.items():
        assert [e["epoch"] for e in log["epochs"]] == list(range(1, 101)), name
        assert all(e["steps"] == log["epochs"][0]["steps"] for e in log["epochs"]), name
        assert abs(log["train_s"] - float(published[name][7])) < 0.01, name  # as published (cut to 2 decimals)
    # the one published figure the logs contradict: g3s.xlarge's initialisation
    assert round(parsed["g3s.xlarge"]["init_s"], 2) == 21.37 and float(published["g3s.xlarge"][6]) == 23.07


def test_an_epoch_line_yields_its_seconds_step_time_and_metrics(parsed):
    first = parsed["g4dn.xlarge"]["epochs"][0]
    # "100/100 [====] - 16s 112ms/step - loss: 96.3423 - mae: 5.2850 - accuracy: 0.3791 - val_loss: 162.0817 ..."
    assert (first["steps"], first["seconds"], first["step_s"]) == (100, 16, 0.112)
    assert (first["loss"], first["val_loss"], first["val_accuracy"]) == (96.3423, 162.0817, 0.3986)
    assert parsed["g4dn.xlarge"]["evaluation"]["steps"] == 221 and parsed["2x g4dn.xlarge"]["evaluation"] is None


def test_the_model_summary_is_read_with_its_wrapped_names_and_totals(parsed):
    layers = parsed["g4dn.xlarge"]["layers"]
    assert len(layers) == 27 and layers[2] == {"name": "batch_normalization", "type": "BatchNormalization",
                                               "output_shape": [None, 96, 96, 32], "parameters": 128}
    assert layers[3]["name"] == "max_pooling2d" and layers[3]["type"] == "MaxPooling2D"  # ")" wrapped alone
    assert sum(layer["parameters"] for layer in layers) == parsed["g4dn.xlarge"]["totals"]["total"] == 7_266_494
    cluster = parsed["4x g4dn.xlarge"]
    assert cluster["totals"]["total"] == 7_529_150 and len(cluster["tf_config"]["cluster"]["worker"]) == 4
    assert extra_layers(cluster["layers"], layers) == [{"type": "Dense", "parameters": 262_656}]
    assert extra_layers(layers, layers) == []


def test_a_logs_model_has_kpbenchs_flops_where_it_is_kpbenchs_model(parsed, tmp_path):
    runs = {run["instance"]: run for run in write_parsed(LOGS, tmp_path / "e.csv", tmp_path / "r.json")}
    reference = read_json(sorted((REPO / "campaigns").glob("*/results/model.json"))[-1])
    described = log_model(runs["g4dn.xlarge"], "x")
    assert described["training_flops_per_image"] == reference["training_flops_per_image"]
    assert [layer["flops"] for layer in described["layers"]] == [layer["flops"] for layer in reference["layers"]]
    # one more Dense(512 → 512): 2 × 512 × 512 forward FLOPs more per image
    assert log_model(runs["2x g4dn.xlarge"], "y")["forward_flops_per_image"] == \
        reference["forward_flops_per_image"] + 2 * 512 * 512


def test_run_facts_are_the_logs_own(tmp_path):
    runs = {run["instance"]: run for run in write_parsed(LOGS, tmp_path / "e.csv", tmp_path / "r.json")}
    one, two = runs["g4dn.xlarge"], runs["2x g4dn.xlarge"]
    assert (one["rows_per_worker"], one["train_rows_per_worker"], one["steps_per_epoch"]) == (7049, 6344, 100)
    assert (two["workers"], two["rows_per_worker"], two["steps_per_epoch"], two["batch_per_worker"]) == (2, 3524, 50, 64)
    assert one["first_epoch_s"] == 16 and one["steady_epoch_s"] == pytest.approx(0.059 * 100)
    assert one["first_epoch_excess_s"] == pytest.approx(16 - 5.9)
    assert one["step_s"]["p10"] <= one["step_s"]["median"] <= one["step_s"]["p90"]


def test_the_tracked_tables_are_what_the_logs_give_and_a_rerun_changes_nothing(tmp_path):
    write_parsed(LOGS, tmp_path / "e.csv", tmp_path / "r.json")
    assert (tmp_path / "e.csv").read_bytes() == (REPO / "config" / "original_study_epochs.csv").read_bytes()
    assert (tmp_path / "r.json").read_bytes() == (REPO / "config" / "original_study_runs.json").read_bytes()
    write_parsed(LOGS, tmp_path / "e.csv", tmp_path / "r.json")
    assert (tmp_path / "e.csv").read_bytes() == (REPO / "config" / "original_study_epochs.csv").read_bytes()
    assert len((tmp_path / "e.csv").read_text().splitlines()) == 1 + 6 * 100


def _broken(text, line_number, replacement):
    lines = text.split("\n")
    lines[line_number - 1] = replacement
    return "\n".join(lines)


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[: t.index("Epoch 57/100")] + "Epoch 57/100\n  1/100 [....]", "epoch 57 has no final progress line"),
    (lambda t: t.split("Training time")[0], "no Training time line"),
    (lambda t: t.replace("Epoch 12/100", "Epoch 13/100", 1), "where epoch 12 was due"),
    (lambda t: t.replace("Initialization time: 18.117111921310425", "Initialization time: soon"),
     "Initialization time is not a number"),
    (lambda t: t.replace(" conv2d_3 (Conv2D)           (None, 48, 48, 64)        36928",
                         " conv2d_3 (Conv2D)           (None, 48, 48, 64)        many"), "model summary row"),
    (lambda t: "hello\n", "no model summary"),
])
def test_a_broken_log_names_its_file_and_line(damage, message):
    with pytest.raises(KpbenchError, match=message) as error:
        parse_log(damage(_text("g4dn.xlarge.log.gz")), "broken.log")
    assert str(error.value).startswith("broken.log: line ")


def test_a_truncated_gzip_is_refused_by_name(tmp_path):
    data = LOGS[0].read_bytes()
    (tmp_path / "cut.log.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(KpbenchError, match="cut.log.gz"):
        read_log(tmp_path / "cut.log.gz")


def test_a_bad_log_leaves_no_partial_table(tmp_path):
    bad = tmp_path / "logs"
    bad.mkdir()
    for path in LOGS:
        shutil.copy(path, bad / path.name)
    (bad / "g4dn.xlarge.log.gz").write_bytes(gzip.compress(b"Epoch 1/100\n"))
    with pytest.raises(KpbenchError, match="g4dn.xlarge.log.gz"):
        write_parsed(sorted(bad.glob("*.gz")), tmp_path / "e.csv", tmp_path / "r.json")
    assert not (tmp_path / "e.csv").exists() and not (tmp_path / "r.json").exists()


def test_the_clusters_distribution_cost_is_set_beside_the_alpha_beta_model():
    logged = read_runs(REPO / "config" / "original_study_runs.json")
    checked = distribution_check(logged, {"g4dn.xlarge": 5.0}, 0.0)
    assert [c["instance"] for c in checked] == ["2x g4dn.xlarge", "4x g4dn.xlarge"]
    two = checked[0]
    assert two["measured_s"] == pytest.approx(0.135 - 0.059)
    assert two["predicted_s"] == pytest.approx(2 * 1 / 2 * 7_526_974 * 4 / (5e9 / 8))
    assert two["error"] == pytest.approx(two["predicted_s"] / two["measured_s"] - 1)


def test_the_prediction_calibrates_the_original_rows_on_their_logs():
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import configured_workload, load_inputs, predictions

    campaign = sorted((REPO / "campaigns").glob("*/config.yaml"))[-1].parent
    config = load_config([REPO / "config" / "config.yaml", campaign / "config.yaml"])
    summary, models, reference, runs = load_inputs(config, campaign / "results")
    result = predictions(summary, models, runs, [], REPO / "config" / "catalogue.csv", configured_workload(config),
                         reference, original_logs=REPO / "config" / "original_study_runs.json")
    rows = {row["name"]: row for row in result["validation"]}
    assert rows["g4dn.xlarge"]["measured_s"] == pytest.approx(0.059 * 100 * 100)  # steady epochs, not the total
    assert rows["g4dn.xlarge"]["model"] == "reference_cnn"
    assert rows["4x g4dn.xlarge"]["model"].startswith("4x g4dn.xlarge")  # the model its log summarises
    assert result["distribution"] and result["original_logs"]


def test_the_rule_regenerates_the_tables_unchanged(tmp_path):
    from workflow import checkout, snakemake

    root = checkout(tmp_path)
    before = {name: (root / "config" / name).read_bytes() for name in
              ("original_study_epochs.csv", "original_study_runs.json")}
    snakemake(root, "--cores", "1", "config/original_study_runs.json", "--forcerun", "original_logs",
              "--configfile", "tiny.yaml")
    for name, content in before.items():
        assert (root / "config" / name).read_bytes() == content, name
    assert json.loads((root / "config" / "original_study_runs.json").read_text())["runs"]
