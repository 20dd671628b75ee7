"""Probes (kpbench.forecast.probe): a probe's steps are capped, its extrapolation is the hand
computation on a constructed step series, the USD caps refuse before anything launches, and predict
takes a probe as a measured row of its device."""

import copy
import json
import statistics
from pathlib import Path

import pytest

from kpbench import KpbenchError
from kpbench.core import settings
from kpbench.forecast import probe as probes
from kpbench.forecast.plan import plan
from kpbench.train.run import run_training
from specs import CONFIG, run_spec

REPO = Path(__file__).resolve().parents[2]
CAMPAIGN = REPO / "campaigns" / "2026-11-25-default-x3"
SETUP = {"package_bytes": 0.0, "install_s": 0.0, "source": "none"}
PROBE = {"epochs": 2, "steps_per_epoch": 4, "warmup_steps": 1}


def _probe_run(steps, epoch_s, validation_s, full_steps=24, epochs_requested=12, init_s=4.0):
    """A probe's run.json as kpbench.train.run writes it, its times given."""
    return {"instance": {"name": "box", "backend": "local", "usd_per_hour": 1.0, "network_gbps": None, "workers": 1},
            "workload": {"epochs": len(epoch_s), "epochs_requested": epochs_requested, "batch_size": 64,
                         "train_images": 4 * 64, "validation_images": 100},
            "cluster": {"workers": 1, "global_batch": 64},
            "timings": {"init_s": init_s, "profiling_s": 0.0, "epoch_s": epoch_s, "validation_s": validation_s,
                        "wall_s": 20.0, "train_s": sum(epoch_s) + 0.6},
            "cost": {"usd": 20.0 / 3600},
            "probe": {**PROBE, "full_steps_per_epoch": full_steps, "step_s": steps}}


def test_a_probe_trains_its_epochs_of_capped_steps_and_records_each(dataset, tmp_path):
    spec = {**run_spec(workload={"epochs": 5, "batch_size": 8, "max_train_images": 48, "max_val_images": 8},
                       training={"peak_matmul_size": 256}),
            "probe": {"epochs": 2, "steps_per_epoch": 2, "warmup_steps": 1}}
    run = run_training(spec, dataset / "dataset.npz", tmp_path)
    assert len(run["probe"]["step_s"]) == 2 * 2 and len(run["timings"]["epoch_s"]) == 2  # never past its cap
    assert run["probe"]["full_steps_per_epoch"] == 6 and run["workload"]["epochs_requested"] == 5
    assert run["workload"]["train_images"] == 2 * 8  # what it trained; the workload it stands for apart
    # At most half a real epoch's steps an epoch: a dataset read once an epoch never runs out.
    spec["probe"]["steps_per_epoch"] = 50
    assert len(run_training(spec, dataset / "dataset.npz", tmp_path / "again")["probe"]["step_s"]) == 2 * 3


def test_the_extrapolation_is_the_hand_computation():
    steps = [2.0, 0.5, 0.4, 0.6, 0.5, 0.5, 0.7, 0.3]  # the first traces
    run = _probe_run(steps, epoch_s=[6.0, 2.8], validation_s=[1.0, 0.4])
    facts = probes.probe_facts(run)
    steady = steps[1:]
    assert facts["step_s"] == statistics.median(steady) == 0.5
    assert facts["validation_s"] == 0.4
    assert facts["rest_s"] == pytest.approx(2.8 - sum(steps[4:]) - 0.4)  # the later epoch, besides steps
    assert facts["first_epoch_excess_s"] == pytest.approx(6.0 - 2.8)
    assert facts["fit_s"] == pytest.approx(0.6)  # fit's own, besides its epochs
    result = probes.extrapolate(run, SETUP, {}, epochs_to_target=5)
    per_epoch = 24 * 0.5 + 0.4 + facts["rest_s"]
    assert result["train_s"] == pytest.approx(0.6 + 3.2 + 12 * per_epoch)
    assert result["run_s"] == pytest.approx(4.0 + result["train_s"])
    assert result["train_s_low"] < result["train_s"] < result["train_s_high"]
    assert result["train_s_high"] == pytest.approx(0.6 + 3.2 + 12 * (24 * facts["step_p90_s"] + 0.4 + facts["rest_s"]))
    training = next(t for t in result["rental"]["terms"] if t["term"] == "training")
    assert training["s"] == pytest.approx(0.6 + 12 * per_epoch) and "probe" in training["source"]
    assert result["time_to_target_s"] == pytest.approx(result["rental"]["wall_s"] - 7 * per_epoch)
    # Validated against full runs of the same instance: the error of the median run.
    full = [{"timings": {"train_s": t, "init_s": 4.0}} for t in (160.0, 170.0, 200.0)]
    check = probes.validated(result, full)
    assert check["train_error"] == pytest.approx(result["train_s"] / 170.0 - 1)
    assert check["probe_share"] == pytest.approx(20.0 / 174.0)


def test_a_run_that_is_no_whole_probe_is_refused_by_name():
    with pytest.raises(KpbenchError, match="run of box is no probe"):
        probes.probe_facts({**_probe_run([1.0] * 8, [1, 1], [0, 0]), "probe": None})
    with pytest.raises(KpbenchError, match="probe of box timed 7 steps over 2 epoch"):
        probes.probe_facts(_probe_run([1.0] * 7, [1, 1], [0, 0]))


def _ec2_config(price):
    config = copy.deepcopy(settings.load_config([CONFIG]))
    config["instances"] = [{"name": "gpu", "backend": "ec2", "instance_type": "g4dn.xlarge", "usd_per_hour": price,
                            "workers": 1, "gpus": 1, "gpu_model": "Tesla T4", "vcpus": 4},
                           {"name": "pair", "backend": "ec2-cluster", "instance_type": "g4dn.xlarge",
                            "usd_per_hour": price, "workers": 2, "gpus": 1, "gpu_model": "Tesla T4", "vcpus": 4}]
    return config


@pytest.mark.parametrize("price, refused", [(0.5, None), (5.0, "probe of gpu is priced at 1.25 USD"),
                                            (2.0, "probes are priced at .* together")])
def test_the_usd_caps_refuse_an_over_budget_probe_before_launch(price, refused):
    config = _ec2_config(price)
    config["probe"] = {**config["probe"], "max_seconds": 900, "max_usd": 1.0, "max_total_usd": 0.8}
    capped = settings.probe_caps(config)
    assert capped["aws"]["max_lifetime_h"] == 0.25 and capped["limits"]["deadline_s"] == 900
    workload = probes.probe_workload(settings.workload(config), config["probe"])
    # No forecast for the type: each probe is charged its time cap, the most it can run.
    planned = plan(config["instances"], workload, 6344, capped["aws"], predicted={})
    assert all(row["billed_s"] == 900 for row in planned["rows"])
    if refused is None:
        assert probes.check_probe_plan(planned, config["probe"]) is planned
    else:
        with pytest.raises(KpbenchError, match=refused + ".*nothing was launched"):
            probes.check_probe_plan(planned, config["probe"])


def test_predict_takes_a_probe_as_a_measured_row_weighted_by_its_steps(tmp_path):
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import configured_workload, load_inputs, predictions

    config = load_config([REPO / "config" / "config.yaml", CAMPAIGN / "config.yaml"])
    summary, models, reference, runs = load_inputs(config, CAMPAIGN / "results")
    # A probe of `local`: the campaign's first run of it, cut to two epochs of four steps.
    source = next(p for p in runs if "/local/" in str(p))
    run = json.loads(Path(source).read_text())
    run["probe"] = {**PROBE, "full_steps_per_epoch": 24, "step_s": [3.0] + [0.83] * 7}
    run["workload"]["epochs_requested"] = 12
    run["timings"]["epoch_s"], run["timings"]["validation_s"] = run["timings"]["epoch_s"][:2], run["timings"]["validation_s"][:2]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    result = predictions(summary, models, runs, [], REPO / "config" / "catalogue.csv", configured_workload(config),
                         reference, probe_paths=[path])
    row = next(r for r in result["validation"] if r["name"] == "local (probe)")
    assert row["origin"] == "kpbench, tf-keras" and row["device"] == "AMD EPYC" and row["probe"]
    assert row["weight"] == pytest.approx(7 / (24 * 12))  # the share of a full run's steps it timed
    local = next(r for r in result["validation"] if r["name"] == "local")
    assert "local (probe)" in local["calibration_rows"]  # the probe measured local's device
    assert "local (probe)" not in local["machine_out_calibration_rows"]


def test_the_top_candidates_are_ec2_rows_of_least_predicted_cost_that_the_configuration_accepts(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "candidates.yaml"
    result = subprocess.run([sys.executable, "-m", "kpbench", "predict", "--configfile", str(REPO / "config" / "config.yaml"),
                             str(CAMPAIGN / "config.yaml"), "--results", str(CAMPAIGN / "results"),
                             "--out", str(tmp_path / "forecast.json"), "--candidates", "3", str(out)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    forecast = json.loads((tmp_path / "forecast.json").read_text())
    config = settings.load_config([REPO / "config" / "config.yaml", REPO / "config" / "aws.yaml", out], launching=False)
    rows = config["instances"]
    assert [r["backend"] for r in rows] == ["ec2"] * 3
    costs = {r["instance_type"]: r["cost_to_target_usd"] for r in forecast["catalogue"]
             if r["status"] == "current" and r["cost_to_target_usd"] is not None}  # none: no run of its replicas
    assert [r["instance_type"] for r in rows] == sorted(costs, key=costs.get)[:3]
    assert all(r["usd_per_hour"] > 0 for r in settings.trained_instances(config))  # facts from the catalogue


def test_a_probe_command_given_more_runs_than_files_to_write_says_so_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "kpbench", "probe", "--settings", '{"aws": {}}', "--runs", "a.json",
                             "b.json", "--each", str(tmp_path / "a.json"), "--out", str(tmp_path / "probes.json"),
                             "--csv", str(tmp_path / "probes.csv")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and "--each names 1 file(s) for 2 probe(s)" in result.stderr
    assert not list(tmp_path.iterdir())
