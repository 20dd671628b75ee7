from pathlib import Path

import pytest

from kpbench.core.billing import cluster_usd_per_hour, projected_train_s, run_cost_usd

REPO = Path(__file__).resolve().parents[2]


def test_run_cost_is_hours_times_price():
    assert run_cost_usd(3600, 0.71) == pytest.approx(0.71)
    assert run_cost_usd(595.34 + 18.12, 0.71) == pytest.approx(0.120985, rel=1e-4)
    assert run_cost_usd(None, 1.0) is None and run_cost_usd(10, None) is None
    with pytest.raises(ValueError):
        run_cost_usd(-1, 1.0)


def test_cluster_pays_for_every_worker():
    assert cluster_usd_per_hour({"usd_per_hour": 0.526, "workers": 4}) == pytest.approx(2.104)
    assert cluster_usd_per_hour({"usd_per_hour": 0.1}) == pytest.approx(0.1)
    assert cluster_usd_per_hour({"usd_per_hour": None, "workers": 2}) is None


def test_projection_scales_throughput_to_a_workload():
    assert projected_train_s(100.0, 6344, 100) == pytest.approx(6344.0)
    assert projected_train_s(100.0, 6344, 100, validation_s_per_epoch=2.5) == pytest.approx(6344.0 + 250.0)
    assert projected_train_s(0, 10, 1) is None


AWS = {"max_lifetime_h": 4, "budget_usd": 10}
WORKLOAD = {"epochs": 100, "batch_size": 64, "max_train_images": None}


def _forecast(fixed_s=500.0):
    """A forecast row for type t1 whose fixed terms (all but training) take `fixed_s` billed seconds."""
    terms = [{"term": "provision", "s": 7.0, "billed": False, "source": "test"},
             {"term": "set-up", "s": fixed_s, "billed": True, "source": "test"},
             {"term": "training", "s": 1.0, "billed": True, "source": "test"}]
    rental = {"terms": terms, "fixed_s": fixed_s + 7.0, "usd_per_hour": 1.0}
    return {"t1": {"rental": rental, "train_s": 3000.0, "band": 2.0, "images_per_s": 200.0}}


def _row(name, backend="ec2", **fields):
    return {"name": name, "backend": backend, "instance_type": "t1", "usd_per_hour": 1.0, "workers": 1, **fields}


def test_plan_charges_boot_plus_workload_at_the_expected_throughput():
    from kpbench.forecast.plan import plan

    result = plan([_row("gpu", measured_as="study gpu", workers=2)], WORKLOAD, 6000, AWS, _forecast(),
                  measured={"study gpu": 1000.0})
    (row,) = result["rows"]
    assert row["action"] == "launch (measured 1000 img/s: study gpu)"
    # the rental's billed fixed terms (not its unbilled provisioning), then the workload at that rate
    seconds = 500 + 6000 * 100 / 1000.0
    assert row["fixed_s"] == 507.0 and row["training_s"] == pytest.approx(600.0)
    assert row["hours"] == pytest.approx(seconds / 3600)
    assert row["usd"] == pytest.approx(seconds / 3600 * 2.0)  # two machines
    assert result["total_usd"] == pytest.approx(row["usd"]) and result["within_budget"]


def test_plan_charges_the_lifetime_cap_when_throughput_is_unknown_and_skips_the_rest():
    from kpbench.forecast.plan import plan

    rows = [_row("unknown", instance_type="t2"), _row("slow"), _row("old", ec2_catalogue="retired"), _row("here", backend="local")]
    result = plan(rows, {**WORKLOAD, "max_train_images": 500}, 6000, AWS, _forecast(), measured={"slow": 1.0})
    unknown, slow, old, here = result["rows"]
    assert unknown["hours"] == slow["hours"] == 4 and "maximum lifetime" in unknown["action"]
    assert old["usd"] is None and "retired" in old["action"]
    assert here["usd"] is None and "no AWS cost" in here["action"]
    assert result["train_images"] == 500
    assert result["total_usd"] == pytest.approx(8.0) and result["within_budget"]
    assert not plan(rows, WORKLOAD, 6000, {**AWS, "budget_usd": 7.99}, _forecast(), measured={"slow": 1.0})["within_budget"]
    # a type the forecast does not price is charged the lifetime too
    (other,) = plan([_row("other", instance_type="t2")], WORKLOAD, 6000, AWS, _forecast(), measured={"other": 1e3})["rows"]
    assert other["hours"] == 4 and "no rental model for its type" in other["action"]


def test_plan_command_refuses_a_matrix_over_budget(tmp_path):
    import subprocess
    import sys

    overlay = tmp_path / "poor.yaml"
    overlay.write_text("aws:\n  budget_usd: 1\n")
    out = tmp_path / "plan.json"
    result = subprocess.run([sys.executable, "-m", "kpbench", "plan", "--configfile", "config/config.yaml",
                             "config/aws.yaml", str(overlay), "--out", str(out)],
                            capture_output=True, text=True, cwd=str(REPO))
    assert result.returncode == 1
    assert "over aws.budget_usd = 1.00: nothing launched" in result.stderr
    assert "retired from EC2: not launched" in result.stdout and "4x-g4dn.xlarge" in result.stdout
    assert not out.exists()


def test_plan_charges_every_repeat():
    from kpbench.forecast.plan import plan

    once = plan([_row("gpu")], WORKLOAD, 6000, AWS, _forecast(), measured={"gpu": 1000.0})
    thrice = plan([_row("gpu")], WORKLOAD, 6000, AWS, _forecast(), measured={"gpu": 1000.0}, repeats=3)
    assert thrice["total_usd"] == pytest.approx(3 * once["total_usd"])
    assert thrice["rows"][0]["runs"] == 3 and thrice["rows"][0]["hours"] == pytest.approx(3 * once["rows"][0]["hours"])


def test_plan_and_runs_pay_for_the_volume_and_the_public_address_of_every_machine():
    from kpbench.core.billing import ec2_usd_per_hour
    from kpbench.forecast.plan import plan

    aws = {**AWS, "volume_gb": 100, "prices": {"ebs_gp3_usd_per_gb_month": 0.08, "public_ipv4_usd_per_hour": 0.005}}
    extras = 100 * 0.08 / 720 + 0.005  # gp3 per GB and 30-day month, prorated; IPv4 per hour
    assert ec2_usd_per_hour(_row("gpu", workers=2), aws) == pytest.approx(2 * (1.0 + extras))
    (row,) = plan([_row("gpu", workers=2)], WORKLOAD, 6000, aws, _forecast(), measured={"gpu": 1000.0})["rows"]
    seconds = 500 + 6000 * 100 / 1000.0
    assert row["usd"] == pytest.approx(seconds / 3600 * 2 * (1.0 + extras))


def test_billing_is_per_second_with_a_one_minute_minimum():
    from kpbench.core.billing import billed_seconds

    assert billed_seconds(5) == 60 and billed_seconds(0) == 60
    assert billed_seconds(60.2) == 61 and billed_seconds(3600) == 3600


def test_plan_command_counts_the_configured_repeats(tmp_path):
    import json
    import subprocess
    import sys

    def total(repeats):
        overlay = tmp_path / f"r{repeats}.yaml"
        overlay.write_text(f"repeats: {repeats}\naws:\n  budget_usd: 100000\n")
        out = tmp_path / f"plan{repeats}.json"
        result = subprocess.run([sys.executable, "-m", "kpbench", "plan", "--configfile", "config/config.yaml",
                                 "config/aws.yaml", str(overlay), "--out", str(out), "--no-quota-check"],
                                capture_output=True, text=True, cwd=str(REPO))
        assert result.returncode == 0, result.stderr
        return json.loads(out.read_text())["total_usd"]

    assert total(3) == pytest.approx(3 * total(1))


def test_plan_names_the_vcpu_quota_to_raise_before_anything_launches(monkeypatch, capsys):
    """Moto has no Service Quotas: botocore's Stubber answers as the service does."""
    import boto3
    from botocore.stub import Stubber

    from kpbench import KpbenchError
    from kpbench.backends.aws import api
    from kpbench.cli import main

    client = boto3.client("service-quotas", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    # 4x g4dn (4 vCPUs) + 2x g4dn + g4dn + g5 + g6, 2 repeats: (16 + 8 + 4 + 4 + 4) * 2 = 72 G vCPUs; c5: 32
    stub.add_response("get_service_quota", {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": 8.0}},
                      {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    stub.add_response("get_service_quota", {"Quota": {"QuotaCode": "L-1216C47A", "Value": 64.0}},
                      {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"})
    stub.activate()
    monkeypatch.setattr(api, "client", lambda boto, name: client)
    monkeypatch.setattr(api, "session", lambda config: None)
    out = REPO / "results" / "never-written-plan.json"
    monkeypatch.chdir(REPO)
    with pytest.raises(KpbenchError) as refused:
        args = main.build_parser().parse_args(["plan", "--configfile", "config/config.yaml", "config/aws.yaml",
                                              str(REPO / "tests" / "fixtures" / "two-repeats.yaml"), "--out", str(out)])
        args.func(args)
    message = str(refused.value)
    assert "'Running On-Demand G and VT instances' (L-DB2E81BA) in us-east-1 is 8 vCPUs" in message
    assert "needs 72 at once" in message and "--desired-value 72" in message
    assert "L-1216C47A" not in message  # 32 standard vCPUs fit the 64 allowed
    assert not out.exists()
    stub.assert_no_pending_responses()
