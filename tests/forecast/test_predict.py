"""The prediction model (kpbench.forecast.predict): counts against hand-computed layers, the roofline on
synthetic devices, leave-one-out that never sees the row it predicts, and the plan's use of it."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from kpbench import KpbenchError
from kpbench.forecast import calibration, errors, perf_model
from kpbench.forecast.plan import plan
from kpbench.machine import device_peaks

REPO = Path(__file__).resolve().parents[2]
CAMPAIGN = REPO / "campaigns" / "2026-11-25-default-x3"
H200 = REPO / "bench" / "measured" / "2026-11-27-h200-keras3-jax" / "run.json"
SEPARABLE = REPO / "bench" / "measured" / "2026-11-28-epyc-2core-tf-separable-fp32" / "run.json"

# A 4x4x1 input: Conv 3x3 to 2 channels ('same'), BN, Flatten, Dense 3.
LAYERS = [
    {"name": "conv", "type": "Conv2D", "output_shape": [4, 4, 2], "parameters": 20, "flops": 2 * 9 * 1 * 2 * 16},
    {"name": "bn", "type": "BatchNormalization", "output_shape": [4, 4, 2], "parameters": 4, "flops": 0},
    {"name": "flat", "type": "Flatten", "output_shape": [32], "parameters": 0, "flops": 0},
    {"name": "dense", "type": "Dense", "output_shape": [3], "parameters": 99, "flops": 2 * 32 * 3},
]


def test_flops_and_bytes_match_hand_computed_layers():
    rows = {r["name"]: r for r in perf_model.layer_costs(LAYERS, batch_size=4, input_shape=(4, 4, 1))}
    conv = rows["conv"]
    assert conv["forward_flops"] == 576 and conv["backward_flops"] == 1152
    # float32 activations: input 16 + output 32 elements; 20 weights read once per batch of 4
    assert conv["forward_bytes"] == pytest.approx(4 * (16 + 32) + 20 * 4 / 4)
    # backward: read the output gradient and the saved input, write the input gradient; weights and their gradients
    assert conv["backward_bytes"] == pytest.approx(4 * (32 + 2 * 16) + 2 * 20 * 4 / 4)
    assert rows["bn"]["forward_flops"] == 4 * 32
    assert rows["flat"]["forward_bytes"] == rows["flat"]["backward_bytes"] == 0
    assert rows["dense"]["forward_bytes"] == pytest.approx(4 * (32 + 3) + 99)
    assert rows["optimizer"]["backward_bytes"] == pytest.approx(28 * 123 / 4)
    half = {r["name"]: r for r in perf_model.layer_costs(LAYERS, 4, "mixed_float16", (4, 4, 1))}
    assert half["conv"]["forward_bytes"] == pytest.approx(2 * (16 + 32) + 20)  # weights stay float32


def test_the_reference_models_counts_agree_with_its_layer_table():
    model = json.loads((CAMPAIGN / "results" / "model.json").read_text())
    rows = {r["name"]: r for r in perf_model.layer_costs(model["layers"], 64)}
    assert rows["block1_conv2"]["forward_flops"] == 2 * 9 * 32 * 32 * 96 * 96
    assert rows["block1_conv2"]["forward_bytes"] == pytest.approx(4 * 2 * 96 * 96 * 32 + 9248 * 4 / 64)
    dense = [r for r in rows.values() if r["type"] in ("Conv2D", "Dense")]
    assert sum(r["forward_flops"] for r in dense) == model["forward_flops_per_image"]


def test_roofline_on_synthetic_devices(monkeypatch):
    costs_rows = [{"name": "dense-math", "type": "X", "forward_flops": 1e6, "forward_bytes": 1e3,
                   "backward_flops": 0, "backward_bytes": 0},
                  {"name": "copy", "type": "Y", "forward_flops": 1e3, "forward_bytes": 1e6,
                   "backward_flops": 0, "backward_bytes": 0}]
    table = {r["name"]: r for r in perf_model.roofline(costs_rows, flops_s=1e9, bytes_s=1e8)}  # ridge: 10 FLOP/byte
    assert table["dense-math"]["forward_bound"] == "compute" and table["dense-math"]["forward_s"] == pytest.approx(1e-3)
    assert table["copy"]["forward_bound"] == "memory" and table["copy"]["forward_s"] == pytest.approx(1e-2)
    monkeypatch.setitem(device_peaks.PEAKS, "Toy GPU", {"fp32": 2.0, "mixed": None, "mem_gbs": 100, "class": "gpu-toy",
                                                 "kind": "datasheet", "source": "test"})
    flops_s, bytes_s, klass = perf_model.device_peaks(device_peaks.device_entry("Toy GPU"), 2, "mixed_float16")
    assert (flops_s, bytes_s, klass) == (4e12, 2e11, "gpu-toy/fp32")  # no faster path: FP32, FP32's class


MODEL = {"name": "toy", "layers": LAYERS, "trainable_parameters": 123, "training_flops_per_image": 3 * 768}
# The same layout at half the FLOPs: a second model, as a row that trained another one would carry.
HALF = {"name": "half", "layers": [{**layer, "flops": layer["flops"] / 2} for layer in LAYERS],
        "trainable_parameters": 123, "training_flops_per_image": 3 * 384}


def _synthetic_rows(monkeypatch, measured, models=(MODEL, MODEL, MODEL), devices=("Toy A", "Toy B", "Toy C")):
    """Rows A, B, C measured on `devices`."""
    # Slow arithmetic against fast memory: the toy layers are compute-bound, so FLOPs set their times.
    for name in set(devices):
        monkeypatch.setitem(device_peaks.PEAKS, name, {"fp32": 0.001, "mixed": None, "mem_gbs": 100, "class": "gpu-toy",
                                                "kind": "datasheet", "source": "test"})
    reference = {"epochs": 2, "train_images": 128, "validation_images": 16, "batch_size": 4}
    rows = [calibration._row(name, "test", perf_model.machine(device, 1, "float32", 4), seconds, model, reference, 0.0)
            for name, device, seconds, model in zip("ABC", devices, measured, models)]
    for row in rows:  # rows of a device's efficiency, not of a software's per-step floor (test_rental's)
        row["floor_bound"] = False
    return rows, reference


def test_leave_one_out_never_uses_a_row_to_predict_itself(monkeypatch):
    rows, reference = _synthetic_rows(monkeypatch, [1.0, 2.0, 4.0])
    results = calibration.leave_one_out(rows, {"toy": MODEL}, reference, 0.0)
    for row, result in zip(rows, results):
        assert row["name"] not in result["calibration_rows"] and len(result["calibration_rows"]) == 2
    # A's prediction: its ideal time over the geometric mean of B's and C's efficiencies
    expected = rows[0]["ideal_s"] / math.sqrt(rows[1]["efficiency"] * rows[2]["efficiency"])
    assert results[0]["predicted_s"] == pytest.approx(expected)
    # ... and does not move when A's own measurement does
    moved, _ = _synthetic_rows(monkeypatch, [100.0, 2.0, 4.0])
    assert calibration.leave_one_out(moved, {"toy": MODEL}, reference, 0.0)[0]["predicted_s"] == pytest.approx(expected)
    # identical devices: the naive peak ratio is the median of the others' times
    assert results[0]["naive_s"] == pytest.approx(3.0)


def test_a_machine_held_out_leaves_out_every_row_of_its_device(monkeypatch):
    """A and B ran on one device (another model or precision on the same machine, or a probe of it):
    held out as a row, A is predicted from B, its device's other row; held out as a machine, from C
    alone, as a catalogue machine nobody measured would be."""
    rows, reference = _synthetic_rows(monkeypatch, [1.0, 2.0, 4.0], devices=("Toy A", "Toy A", "Toy C"))
    results = calibration.leave_one_out(rows, {"toy": MODEL}, reference, 0.0)
    a, b, c = results
    assert a["calibration_rows"] == ["B"] and a["calibrated_from"].startswith("device")
    assert a["machine_out_calibration_rows"] == ["C"] and c["calibration_rows"] == ["A", "B"]
    assert a["machine_out_predicted_s"] == pytest.approx(rows[0]["ideal_s"] / rows[2]["efficiency"])
    assert c["machine_out_calibration_rows"] == ["A", "B"]  # C's device has no other row
    summary = {e["group"]: e for e in errors.error_summary(results)}["single machine"]
    assert summary["machine_out_median"] == pytest.approx(sorted(abs(r["machine_out_error"]) for r in results)[1])
    # the catalogue's band is the machine-held-out one: here A's and B's miss from C (4x, 2x)
    assert errors.band_for(results, "gpu-toy/fp32") == pytest.approx(4.0)
    assert errors.bands(results) == {"gpu": {"factor": pytest.approx(4.0), "row": "A"}}  # A's miss sets it, named
    # every row on one device: nothing is left to predict it from, said by name
    alone, _ = _synthetic_rows(monkeypatch, [1.0, 2.0, 4.0], devices=("Toy A",) * 3)
    with pytest.raises(KpbenchError, match="no single-machine row besides those of 'Toy A' to predict A"):
        calibration.leave_one_out(alone, {"toy": MODEL}, reference, 0.0)


def test_runs_measured_elsewhere_carry_the_model_they_trained(tmp_path):
    """A measured folder without its model.json, or with another model's, is refused by name; with it,
    the row is modelled with that model and named by device, model and precision."""
    from kpbench.forecast.predict import _measured_models

    folder = tmp_path / "m"
    folder.mkdir()
    run = json.loads(SEPARABLE.read_text())
    (folder / "run.json").write_text(json.dumps(run))
    with pytest.raises(KpbenchError, match="no model.json beside it"):
        _measured_models([folder / "run.json"], [run])
    (folder / "model.json").write_text((SEPARABLE.parent / "model.json").read_text().replace(
        '"name": "separable_cnn"', '"name": "reference_cnn"'))
    with pytest.raises(KpbenchError, match="describes 'reference_cnn'.*trained 'separable_cnn'"):
        _measured_models([folder / "run.json"], [run])
    models = _measured_models([SEPARABLE], [run])
    assert set(models) == {"separable_cnn"} and models["separable_cnn"]["trainable_parameters"] < 3e6
    # a model described twice must be described alike (a stale description is refused)
    from kpbench.forecast.predict import _with_measured_models

    stale = {**models["separable_cnn"], "training_flops_per_image": 1}
    with pytest.raises(KpbenchError, match="describes separable_cnn .* describe it again"):
        _with_measured_models({"separable_cnn": stale}, [SEPARABLE], [run])


def test_measured_rows_are_named_apart_and_only_top_level_folders_count(tmp_path):
    """bench/measured/<folder>/run.json are the rows (repeats/ below them are not); two runs of one
    device, model, precision and framework would share a name and are refused, naming it."""
    from kpbench.core.layout import MEASURED_RUNS
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import configured_workload, load_inputs, predictions

    found = sorted(REPO.glob(MEASURED_RUNS))
    assert SEPARABLE in found and all(p.parent.parent.name == "measured" for p in found)
    config = load_config([REPO / "config" / "config.yaml", CAMPAIGN / "config.yaml"])
    summary, models, reference, runs = load_inputs(config, CAMPAIGN / "results")
    twin = tmp_path / "twin"
    twin.mkdir()
    for name in ("run.json", "model.json"):
        (twin / name).write_text((SEPARABLE.parent / name).read_text())
    with pytest.raises(KpbenchError, match=r"more than one is named AMD EPYC CPU \(AVX512_BF16\): separable_cnn, float32, tf"):
        predictions(summary, models, runs, [SEPARABLE, twin / "run.json"], REPO / "config" / "catalogue.csv",
                    configured_workload(config), reference)


def test_every_framework_has_its_software_label():
    from kpbench.machine.detect import FRAMEWORKS

    assert set(calibration.SOFTWARE) == set(FRAMEWORKS) and calibration.SOFTWARE["tf"] == calibration.TODAY


def test_each_measured_row_is_modelled_with_the_model_it_trained(monkeypatch):
    """B and C trained a model of half the FLOPs: their ideal times are their model's, and A (the
    full model) is predicted and naively scaled with its own."""
    rows, reference = _synthetic_rows(monkeypatch, [1.0, 2.0, 4.0], models=(MODEL, HALF, HALF))
    full, _ = _synthetic_rows(monkeypatch, [1.0, 2.0, 4.0])
    assert [row["model"] for row in rows] == ["toy", "half", "half"]
    assert rows[0]["ideal_s"] == pytest.approx(full[0]["ideal_s"]) and rows[1]["ideal_s"] < full[1]["ideal_s"]
    results = calibration.leave_one_out(rows, {"toy": MODEL, "half": HALF}, reference, 0.0)
    expected = rows[0]["ideal_s"] / math.sqrt(rows[1]["efficiency"] * rows[2]["efficiency"])
    assert results[0]["predicted_s"] == pytest.approx(expected)
    assert results[0]["naive_s"] == pytest.approx(3.0 * 2)  # the others' median, at twice their FLOPs


def test_every_catalogue_machine_is_predicted_and_every_measured_row_validated():
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import configured_workload, load_inputs, predictions

    config = load_config([REPO / "config" / "config.yaml", CAMPAIGN / "config.yaml"])
    summary, models, reference, runs = load_inputs(config, CAMPAIGN / "results")
    result = predictions(summary, models, runs, [H200, SEPARABLE], REPO / "config" / "catalogue.csv",
                         configured_workload(config), reference)
    names = [r["name"] for r in result["validation"]]
    assert {"local", "local-2w", "c5.4xlarge", "g4dn.xlarge", "4x g4dn.xlarge"} <= set(names)
    assert any("H200" in name for name in names) and len(names) == 10
    separable = next(r for r in result["validation"] if "separable_cnn" in r["name"])
    assert separable["name"] == "AMD EPYC CPU (AVX512_BF16): separable_cnn, float32, tf"  # device, model, precision, framework
    # measured with the pipeline's own software on this machine's CPU: with the row held out it is
    # calibrated on `local` (same device and software); with its device held out, never on `local`
    assert separable["origin"] == calibration.TODAY and separable["device"] == "AMD EPYC"
    assert "local" in separable["calibration_rows"] and "local" not in separable["machine_out_calibration_rows"]
    # a sound peak gives an MFU in (0, 1]; this campaign's CPU, recorded by name alone, has none
    assert all(r["mfu"] is None or 0 < r["mfu"] <= 1 for r in result["validation"])
    assert all(r["mfu"] for r in result["validation"] if r["origin"] != calibration.TODAY)
    assert not any(r["mfu"] for r in result["validation"] if r["device"] == "AMD EPYC")
    assert {r["group"] for r in result["errors"]} >= {"single machine", "cluster"}
    types = {r["instance_type"]: r for r in result["catalogue"]}
    for family in ("c7i", "c7a", "g4dn", "g5", "g6", "g6e", "p4d", "p5"):
        assert any(t.startswith(family + ".") for t in types), family
    assert types["g3s.xlarge"]["status"] == "retired" and not types["g3s.xlarge"]["pareto"]
    for row in result["catalogue"]:
        assert row["train_s_low"] < row["train_s"] < row["train_s_high"] and row["band"] > 1
        assert 0 < row["mfu"] <= 1
    assert any(r["pareto"] for r in result["catalogue"])
    # On the front: no current row is both cheaper and within 1 % of its time (a tie in time is won on cost).
    current = [r for r in result["catalogue"] if r["status"] == "current"]
    for row in (r for r in current if r["pareto"]):
        assert not [o for o in current if o is not row and o["cost_usd"] < row["cost_usd"]
                    and o["rental_s"] <= row["rental_s"] * 1.01], row["instance_type"]


def test_a_gpu_batch_sweep_of_todays_software_floors_the_gpu_rows_and_no_cpu_row(tmp_path):
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import configured_workload, load_inputs, predictions

    config = load_config([REPO / "config" / "config.yaml", CAMPAIGN / "config.yaml"])
    summary, models, reference, runs = load_inputs(config, CAMPAIGN / "results")
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"framework": "tf", "device_kind": "gpu", "device": "NVIDIA L4", "date": "2026-12-04",
                                 "machine": "a GPU host", "batches": [{"batch": 8, "step_s": 0.5},
                                                                      {"batch": 64, "step_s": 0.6}]}))
    args = (summary, models, runs, [H200], REPO / "config" / "catalogue.csv", configured_workload(config), reference)
    free, floored = predictions(*args), predictions(*args, sweep_paths=[sweep])
    for before, after in zip(free["catalogue"], floored["catalogue"]):
        if after["class"].startswith("gpu"):
            assert after["floor_s"] == 0.5 and "batch sweep (batch 8)" in after["floor_source"]
            assert after["train_s"] >= before["train_s"] and after["floor_bound"]  # 0.5 s a step binds any GPU
        else:
            assert after["floor_s"] == 0.0 and after["train_s"] == before["train_s"]


def test_plan_prices_unmeasured_rows_at_the_slow_end_of_the_prediction():
    aws = {"max_lifetime_h": 4, "budget_usd": 10}
    workload = {"epochs": 10, "batch_size": 64, "max_train_images": None}
    rows = [{"name": "new", "backend": "ec2", "instance_type": "g5.xlarge", "usd_per_hour": 1.0, "workers": 1},
            {"name": "known", "backend": "ec2", "instance_type": "g5.xlarge", "usd_per_hour": 1.0, "workers": 1},
            {"name": "pair", "backend": "ec2-cluster", "instance_type": "g5.xlarge", "usd_per_hour": 1.0,
             "workers": 2}]
    terms = [{"term": "boot", "s": 100.0, "billed": True, "source": "test"},
             {"term": "training", "s": 60.0, "billed": True, "source": "test"}]
    forecast = {"g5.xlarge": {"images_per_s": 1000.0, "band": 2.0, "train_s": 60.0,
                              "rental": {"terms": terms, "fixed_s": 100.0, "usd_per_hour": 1.0}}}
    result = plan(rows, workload, 6000, aws, forecast, measured={"known": 1000.0})  # a finished run of `known`
    new, known, pair = result["rows"]
    assert new["hours"] == pytest.approx((100 + 6000 * 10 / 500.0) / 3600)  # 1000 img/s within x2: 500
    assert "predicted 1000 img/s" in new["action"] and new["band"] == 2.0
    assert known["hours"] == pytest.approx((100 + 6000 * 10 / 1000.0) / 3600)
    assert pair["hours"] == 4  # a cluster is not a single machine's prediction: the lifetime cap


def test_predict_command_writes_the_ranked_catalogue(tmp_path, capsys):
    from kpbench.cli.main import main

    out, table = tmp_path / "p.json", tmp_path / "p.csv"
    assert main(["predict", "--configfile", str(REPO / "config" / "config.yaml"), str(CAMPAIGN / "config.yaml"),
                 "--results", str(CAMPAIGN / "results"), "--measured", str(H200),
                 "--catalogue", str(REPO / "config" / "catalogue.csv"), "--out", str(out), "--csv", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "ranked by time to target" in printed and "ranked by cost to target" in printed
    assert "leave-one-out (row held out), single machine" in printed and "p5.48xlarge" in printed
    assert "leave-one-out (device held out), single machine" in printed
    assert table.read_text().splitlines()[0].startswith("instance_type,")
    assert json.loads(out.read_text())["validation"]
    # Each row's time split into its fixed and per-epoch parts, and the term that dominates it.
    p5 = next(row for row in json.loads(out.read_text())["catalogue"] if row["instance_type"] == "p5.48xlarge")
    line = next(line for line in printed.splitlines() if line.startswith("p5.48xlarge"))
    assert f"{p5['fixed_s']:.1f}" in line and f"{p5['per_epoch_s']:.2f}" in line and line.endswith(p5["dominant"])
    assert "fixed s" in printed and "s/epoch" in printed and "dominant term" in printed
    # On demand and spot side by side: the campaign's spot prices; with no band, the bill if never
    # interrupted (a lower bound) and no verdict.
    assert f"spot prices: campaigns/{CAMPAIGN.name}/spot_prices.csv" in printed
    g4dn = next(row for row in json.loads(out.read_text())["catalogue"] if row["instance_type"] == "g4dn.xlarge")
    line = next(line for line in printed.splitlines() if line.startswith("g4dn.xlarge") and "unknown" in line)
    assert f"{g4dn['spot']['usd_per_hour']:.4f}" in line and f">={g4dn['spot']['usd_if_uninterrupted']:.4f}" in line
    # To the target only where runs of ours with as many replicas reached it: 8 GPUs train a global
    # batch 8 times as large, which no run here measured.
    forecast = json.loads(out.read_text())
    summary = pd.read_csv(CAMPAIGN / "results" / "summary.csv")
    ours = summary[summary["source"] == "kpbench"]
    for workers in (1, 2):
        reached = ours[ours["workers"] == workers]["epochs_to_target"].dropna()
        assert forecast["epochs_to_target_by_replicas"][str(workers)] == pytest.approx(reached.median())
    # Keyed only by the worker counts we ran (the study's 4-machine cluster is no run of ours); the
    # single-worker runs' spread is kept beside their median.
    assert set(forecast["epochs_to_target_by_replicas"]) == {str(int(w)) for w in ours["workers"].unique()} | {"1"}
    single = ours[ours["workers"] == 1]["epochs_to_target"].dropna()
    assert forecast["epochs_to_target_range"] == [single.min(), single.max()]
    assert p5["time_to_target_s"] is None and p5["cost_to_target_usd"] is None and p5["cost_usd"] > 0
    assert g4dn["time_to_target_s"] == pytest.approx(
        g4dn["rental_s"] - g4dn["train_s"] + g4dn["per_epoch_s"] * forecast["epochs_to_target"])
    assert "no time to the target, so not compared: " in printed and "p5.48xlarge" in printed.split("not compared: ")[1]


def test_the_original_clusters_all_reduce_at_their_types_guaranteed_bandwidth():
    """The study's table gives g4dn.xlarge's "up to" 25 Gbit/s; a run-long all-reduce gets the
    guaranteed baseline, which the catalogue gives (5 Gbit/s), and the prediction slows with it."""
    from kpbench.analysis.aggregate import by_instance
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import load_inputs, read_catalogue

    config = load_config([REPO / "config" / "config.yaml", CAMPAIGN / "config.yaml"])
    from kpbench.core.run_reader import read_run

    summary, models, reference, run_paths = load_inputs(config, CAMPAIGN / "results")
    runs = [read_run(path) for path in run_paths]
    models = {key: {**value, "name": key} for key, value in models.items()}
    baseline = {r["instance_type"]: r["network_gbps"] for r in read_catalogue(REPO / "config" / "catalogue.csv")}
    assert baseline["g4dn.xlarge"] == 5
    links = {}
    for given in (None, baseline):
        rows, _ = calibration.measured_rows(by_instance(summary), runs, [], models, reference, given)
        pair = next(r for r in rows if r["name"] == "2x g4dn.xlarge")
        links[given is None] = (pair["machine"]["link_gbps"], pair["ideal_s"])
    (burst_gbps, burst_s), (base_gbps, base_s) = links[True], links[False]
    assert (burst_gbps, base_gbps) == (25, 5) and base_s > burst_s
