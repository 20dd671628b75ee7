"""The rental model (kpbench.forecast.rental): each term on constructed rows, billing as EC2 bills,
the per-step floor, TF32 on Ampere, and `predict` and `plan` pricing one rental alike."""

import json
from pathlib import Path

import pytest

from kpbench import KpbenchError
from kpbench.forecast import perf_model, rental
from kpbench.forecast.plan import plan

REPO = Path(__file__).resolve().parents[2]
CAMPAIGN = REPO / "campaigns" / "2026-11-25-default-x3"
H200 = REPO / "bench" / "measured" / "2026-11-27-h200-keras3-jax" / "run.json"
SETUP = {"package_bytes": 1e9, "install_s": 40.0, "source": "test set-up"}
NO_SETUP = {"package_bytes": 0.0, "install_s": 0.0, "source": "none"}
NO_FIXED = {"init_s": {"s": 0.0, "source": "none"}, "first_epoch_excess_s": {"s": 0.0, "source": "none"}}
WORKLOAD = {"epochs": 10, "train_images": 1000, "validation_images": 100, "batch_size": 64}


def _entry(network_gbps=10.0, usd_per_hour=36.0):
    return {"instance_type": "x1", "network_gbps": network_gbps, "usd_per_hour": usd_per_hour}


def _term(priced, name):
    return next(t for t in priced["terms"] if t["term"] == name)


def test_a_short_rental_is_billed_its_minute():
    priced = rental.rental(_entry(), WORKLOAD, 1.0, NO_FIXED, NO_SETUP, {})
    assert priced["held_s"] < 60 and priced["billed_s"] == 60
    assert priced["cost_usd"] == pytest.approx(60 / 3600 * 36.0)
    # Provisioning comes before "running": in the wall time, not in the bill.
    assert not _term(priced, "provision")["billed"]
    assert priced["wall_s"] == pytest.approx(priced["held_s"] + rental.PROVISION_S)
    long = rental.rental(_entry(), WORKLOAD, 1000.0, NO_FIXED, NO_SETUP, {})
    assert long["billed_s"] == pytest.approx(1000.0 + rental.BOOT_S + _term(long, "set-up: dataset")["s"]
                                             + _term(long, "upload")["s"], abs=1)


def test_set_up_over_a_slow_link_is_what_its_bytes_take():
    slow = rental.rental(_entry(network_gbps=0.1), WORKLOAD, 100.0, NO_FIXED, SETUP, {})
    fast = rental.rental(_entry(network_gbps=100.0), WORKLOAD, 100.0, NO_FIXED, SETUP, {})
    assert _term(slow, "set-up: packages")["s"] == pytest.approx(1e9 * 8 / 0.1e9)  # 80 s
    assert _term(fast, "set-up: packages")["s"] == pytest.approx(0.08)
    assert _term(slow, "set-up: dataset")["s"] == pytest.approx(1100 * rental.DATASET_BYTES_PER_IMAGE * 8 / 0.1e9)
    assert _term(slow, "set-up: install")["s"] == 40.0 == _term(fast, "set-up: install")["s"]
    assert slow["dominant"] == "training" and slow["fixed_s"] > fast["fixed_s"] + 80


def test_the_volume_and_address_are_billed_per_machine():
    aws = {"volume_gb": 100, "prices": {"ebs_gp3_usd_per_gb_month": 0.08, "public_ipv4_usd_per_hour": 0.005}}
    pair = rental.rental(_entry(usd_per_hour=1.0), WORKLOAD, 1000.0, NO_FIXED, NO_SETUP, aws, machines=2)
    assert pair["usd_per_hour"] == pytest.approx(2 * (1.0 + 100 * 0.08 / 720 + 0.005))


def test_fixed_terms_come_from_the_same_software_else_from_all():
    rows = [{"name": "a", "origin": "s1", "fixed": {"init_s": 10.0, "first_epoch_excess_s": 4.0}},
            {"name": "b", "origin": "s1", "fixed": {"init_s": 20.0, "first_epoch_excess_s": None}},
            {"name": "c", "origin": "s2", "fixed": {"init_s": 50.0, "first_epoch_excess_s": 40.0}}]
    same = rental.fixed_terms(rows, "s1")
    assert same["init_s"]["s"] == 15.0 and "same software: a, b" in same["init_s"]["source"]
    assert same["first_epoch_excess_s"]["s"] == 4.0
    other = rental.fixed_terms(rows, "s3")
    assert other["init_s"]["s"] == 20.0 and "all software" in other["init_s"]["source"]
    assert rental.fixed_terms([], "s1")["init_s"]["s"] == 0.0


def _gpu(name="NVIDIA A100"):
    return perf_model.machine(name, 1, "float32", 8)


LAYERS = [{"name": "dense", "type": "Dense", "output_shape": [30], "parameters": 9216 * 30 + 30,
           "flops": 2 * 9216 * 30}]


def test_a_floor_binds_a_small_step_and_not_a_large_one():
    m = _gpu()
    free, detail = perf_model.predict_seconds(m, LAYERS, WORKLOAD, 276510, 0.5)
    assert not detail["floor_bound"]
    floored, detail = perf_model.predict_seconds(m, LAYERS, WORKLOAD, 276510, 0.5, floor_s=0.005)
    steps = detail["steps"]
    assert detail["floor_bound"] and floored > free
    # Every training step at the floor; validation (no floor) adds its little.
    assert WORKLOAD["epochs"] * steps * 0.005 <= floored < WORKLOAD["epochs"] * steps * 0.005 + free
    # A floor below the device's own step changes nothing.
    slow_device, detail = perf_model.predict_seconds(m, LAYERS, WORKLOAD, 276510, 1e-6, floor_s=0.005)
    assert not detail["floor_bound"]
    assert slow_device == pytest.approx(perf_model.predict_seconds(m, LAYERS, WORKLOAD, 276510, 1e-6)[0])


def test_the_floor_is_measured_on_floor_bound_rows_of_the_same_software_else_by_a_batch_sweep(tmp_path):
    gpu = "gpu-hopper/mixed"
    rows = [{"name": "fast gpu", "origin": "jax", "floor_bound": True, "measured_step_s": 0.006, "class": gpu},
            {"name": "slow gpu", "origin": "jax", "floor_bound": False, "measured_step_s": 0.06, "class": gpu},
            {"name": "tf gpu", "origin": "tf", "floor_bound": True, "measured_step_s": 0.002, "class": gpu}]
    assert rental.step_floor(rows, "jax", "gpu") == (0.006, "median measured step of floor-bound row(s): fast gpu")
    seconds, source = rental.step_floor(rows, "other", "gpu")
    assert seconds == 0.0 and "not modelled" in source
    assert rental.is_floor_bound(0.0005, 0.006) and not rental.is_floor_bound(0.02, 0.06)
    # A CPU dispatches its own steps: no floor, whatever was measured.
    assert rental.step_floor(rows, "jax", "cpu")[0] == 0.0
    # A batch sweep of the stack on a GPU gives its fastest median step where no row is floor-bound.
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"framework": "keras3-jax", "device_kind": "gpu", "device": "NVIDIA H200",
                                "date": "2026-12-04", "machine": "test host", "batches": [
                                    {"batch": 8, "step_s": 0.0051}, {"batch": 64, "step_s": 0.0049},
                                    {"batch": 512, "step_s": 0.02}]}))
    sweep = rental.read_sweep(path, {"keras3-jax": "jax"})
    seconds, source = rental.step_floor(rows[1:], "jax", "gpu", [sweep])
    assert seconds == 0.0049 and "batch sweep (batch 64)" in source
    assert rental.step_floor(rows[1:], "jax", "cpu", [sweep])[0] == 0.0
    path.write_text(json.dumps({"framework": "keras3-jax", "batches": []}))
    with pytest.raises(KpbenchError, match="sweep.json: not a batch sweep"):
        rental.read_sweep(path, {"keras3-jax": "jax"})


def test_a_slow_cpu_step_is_its_efficiency_and_floor_bound_rows_calibrate_only_alone():
    from kpbench.forecast.calibration import _row, calibrate

    workload = {**WORKLOAD, "train_images": 640, "validation_images": 64}
    model = {"layers": LAYERS, "trainable_parameters": 276510, "name": "dense", "training_flops_per_image": 1.0}
    # Both devices ran their steps 1000 times slower than their peaks allow.
    slow = {}
    for name, device, devices in (("cpu", "c5.4xlarge CPU", 16), ("gpu", "NVIDIA A100", 1)):
        m = perf_model.machine(device, devices, "float32", 16)
        ideal = perf_model.ideal_epoch_s(m, LAYERS, workload, 276510)[0] * workload["epochs"]
        slow[name] = _row(name, "tf", m, ideal * 1000, model, workload, 0.0)
    assert not slow["cpu"]["floor_bound"]  # the CPU dispatches its own steps: slow is its efficiency
    assert slow["gpu"]["floor_bound"]
    efficiency, level, used = calibrate([slow["gpu"]], "gpu-ampere/tf32", "tf")
    assert used == ["gpu"] and "lower bound" in level and efficiency == pytest.approx(1e-3, rel=0.2)
    assert calibrate([slow["gpu"], slow["cpu"]], "gpu-ampere/tf32", "tf")[2] == ["cpu"]


def test_float32_on_ampere_and_newer_runs_against_the_tf32_roof():
    flops, _, klass = perf_model.device_peaks(_gpu("NVIDIA A100")["entry"], 1, "float32")
    assert klass.endswith("/tf32") and flops == pytest.approx(156e12)
    flops, _, klass = perf_model.device_peaks(_gpu("Tesla T4")["entry"], 1, "float32")
    assert klass.endswith("/fp32") and flops == pytest.approx(8.1e12)


def test_a_set_up_file_missing_a_field_is_named(tmp_path):
    path = tmp_path / "setup.json"
    path.write_text('{"package_bytes": 1}')
    with pytest.raises(KpbenchError, match="setup.json: not a measured set-up"):
        rental.read_setup(path)


@pytest.fixture(scope="module")
def forecast():
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import configured_workload, load_inputs, predictions

    config = load_config([REPO / "config" / "config.yaml", REPO / "config" / "aws.yaml", CAMPAIGN / "config.yaml"])
    summary, models, reference, runs = load_inputs(config, CAMPAIGN / "results")
    result = predictions(summary, models, runs, [H200], REPO / "config" / "catalogue.csv", configured_workload(config),
                         reference, original_logs=REPO / "config" / "original_study_runs.json",
                         setup_path=REPO / "bench" / "measured" / "setup.json", aws=config["aws"])
    return config, result


def test_no_prediction_costs_less_than_a_minute_of_its_machine(forecast):
    _, result = forecast
    for row in result["catalogue"]:
        if row["usd_per_hour"] is not None:
            assert row["billed_s"] >= 60 and row["cost_usd"] >= 60 / 3600 * row["usd_per_hour"], row["instance_type"]
            assert row["rental_s"] > row["train_s"] + rental.BOOT_S
    p5 = next(r for r in result["catalogue"] if r["instance_type"] == "p5.48xlarge")
    # EC2's minute alone bills 0.92 USD on it; for this small workload its fixed terms dominate.
    assert p5["cost_usd"] > 55.04 / 60 and p5["dominant"] != "training" and p5["fixed_s"] > p5["train_s"]


def test_the_h200_row_measures_the_jax_floor_and_its_end_to_end_time(forecast):
    _, result = forecast
    h200 = next(r for r in result["validation"] if "H200" in r["name"])
    # 100 steady epochs (67 s), init 48.1 s and its first epoch's compilation (43.4 s less a steady epoch)
    assert h200["e2e_measured_s"] == pytest.approx(h200["measured_s"] + 48.07 + 42.7, abs=0.5)
    assert h200["e2e_error"] == pytest.approx(h200["e2e_predicted_s"] / h200["e2e_measured_s"] - 1)
    assert any(e["e2e_rows"] for e in result["errors"])


def test_predict_and_plan_price_one_rental_alike(forecast):
    config, result = forecast
    predicted = {row["instance_type"]: row for row in result["catalogue"]}
    row = {"name": "g5", "backend": "ec2", "instance_type": "g5.xlarge", "workers": 1,
           "usd_per_hour": predicted["g5.xlarge"]["usd_per_hour"]}
    workload = config["workloads"][config["workload"]]
    (planned,) = plan([row], workload, config["original_study"]["train_images"], config["aws"], predicted)["rows"]
    # The plan budgets the prediction's slow end: the same rental as predict's "high" cost.
    assert planned["usd"] == pytest.approx(predicted["g5.xlarge"]["cost_usd_high"])
    assert planned["fixed_s"] == pytest.approx(predicted["g5.xlarge"]["fixed_s"])


def test_the_cheapest_machine_changes_with_the_workload_size(forecast):
    from kpbench.forecast.predict import configured_workload

    config, result = forecast
    workload = configured_workload(config)
    sizes = [r["epochs"] for r in result["cheapest_by_size"]]
    assert sizes == sorted(sizes) and len(sizes) == 15
    by_type = {r["instance_type"]: r for r in result["catalogue"]}

    def cost(instance_type, epochs):
        return rental.cost_at(by_type[instance_type], epochs, workload)

    for change in result["crossovers"]:
        assert change["from"] != change["to"] and change["epochs"] > 0
        # At the change the two machines cost the same (to a billed second: EC2 bills whole seconds); just
        # below it the first is cheaper, above it the second.
        below, above = change["epochs"] * 0.99, change["epochs"] * 1.01
        second = max(by_type[t]["rental"]["usd_per_hour"] for t in (change["from"], change["to"])) / 3600
        assert cost(change["from"], change["epochs"]) == pytest.approx(cost(change["to"], change["epochs"]), abs=second)
        assert cost(change["from"], below) < cost(change["to"], below)
        assert cost(change["from"], above) > cost(change["to"], above)


def test_gpu_machines_predicted_below_another_software_s_measured_floor_are_named(forecast):
    """Today's software has no measured GPU floor; the H200 row (Keras 3 on JAX) measured one. A GPU
    machine is named where its step, over all its GPUs, is predicted faster than that floor."""
    from kpbench.forecast.perf_model import device_kind
    from kpbench.forecast.predict import configured_workload

    config, result = forecast
    workload, floors = configured_workload(config), result["other_floors"]
    h200 = next(r for r in result["validation"] if "H200" in r["name"])
    assert h200["floor_bound_row"] and floors["floor_s"] == pytest.approx(h200["measured_step_s"])
    assert "H200" in floors["source"]
    gpus = [r for r in result["catalogue"] if r["status"] == "current" and device_kind(r["class"]) == "gpu"]
    # A step takes the global batch: batch x GPUs images, so an 8-GPU machine takes an eighth of the steps.
    step = {r["instance_type"]: r["per_epoch_s"] / -(-workload["train_images"] // (workload["batch_size"] * r["devices"]))
            for r in gpus}
    assert set(floors["rows"]) == {name for name, s in step.items() if s < floors["floor_s"]}
    p5 = next(r for r in gpus if r["instance_type"] == "p5.48xlarge")
    assert p5["predicted_step_s"] == pytest.approx(step["p5.48xlarge"]) and p5["devices"] == 8
