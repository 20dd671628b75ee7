"""Spot rows on the moto stand-in: an interruption notice (played by an IMDSv2 stand-in) at an epoch
ends in a finished run that continues from its checkpoint and bills every instance it held; a zone
without capacity moves the launch and the relaunch; the on-demand fallback; nothing is left behind."""

import csv
import json

import boto3
import pytest
from test_aws import BUCKET, _Refusal, all_instances, ec2_spec, inject, live_instances

from imds_stand_in import MetadataStandIn
from kpbench.backends.aws import account, bucket_keys, provision
from kpbench.backends.launch import run_instance


def spot_spec(backend="ec2", workers=1, epochs=3, **aws):
    spec, launch = ec2_spec(backend, workers, limits={"notice_poll_s": 0.2}, **aws)
    spec["instance"]["spot"] = True
    spec["workload"]["epochs"] = epochs
    return spec, launch


def described(instance_id):
    (instance,) = [i for i in all_instances() if i["InstanceId"] == instance_id]
    return instance


def launch_of(instance_id):
    """(run id, attempt, worker slot) of a launched instance, from its tags and ClientToken."""
    instance = described(instance_id)
    run_id = next(t["Value"] for t in instance["Tags"] if t["Key"] == provision.TAG_RUN)
    attempt = next(a for a in range(10) if provision.client_token(run_id, a) == instance["ClientToken"])
    return run_id, attempt, instance["AmiLaunchIndex"]


def checkpoint_shipped(run_id):
    """Whether some instance of the run has shipped its checkpoint (its own folder's, not an input)."""
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"kpbench/{run_id}/").get("Contents", [])
    return any(o["Key"].endswith(f"/{bucket_keys.CHECKPOINT}") and "/input/" not in o["Key"] for o in listed)


def notice_first_launch(slot):
    """EC2 schedules the interruption of worker `slot` of the first launch once a checkpoint is shipped."""
    def decide(instance_id):
        run_id, attempt, index = launch_of(instance_id)
        return attempt == 0 and index == slot and checkpoint_shipped(run_id)
    return decide


@pytest.fixture
def metadata():
    stand_ins = []

    def start(decide):
        stand_ins.append(MetadataStandIn(decide))
        return stand_ins[-1]

    yield start
    for each in stand_ins:
        each.close()


def history_epochs(out):
    with open(out / "history.csv") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def assert_nothing_left():
    assert live_instances() == []
    assert boto3.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:project", "Values": ["kpbench"]}])["SecurityGroups"] == []
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="kpbench/").get("KeyCount") == 0


def assert_billed_every_instance(run, out, count):
    remote = run["remote"]
    assert len(remote["instances"]) == count
    assert {h["instance_id"] for h in remote["instances"]} >= set(remote["instance_ids"])
    assert all(h["billed_s"] >= 60 and h["ended_at"] >= h["running_at"] for h in remote["instances"])
    assert run["cost"]["usd"] == pytest.approx(sum(h["usd"] for h in remote["instances"]))
    (bill,) = [json.loads(p.read_text()) for p in (out / ".costs").iterdir()]
    assert bill["usd"] == pytest.approx(run["cost"]["usd"]) and len(bill["interruptions"]) == len(remote["interruptions"])


def test_a_spot_instance_noticed_at_an_epoch_finishes_from_its_checkpoint(aws_env, tiny_dataset, tmp_path, player,
                                                                           metadata):
    stand_in = metadata(notice_first_launch(0))
    player(metadata=stand_in)
    out = tmp_path / "out"
    run = run_instance(*spot_spec(epochs=4), tiny_dataset, out)

    (interruption,) = run["remote"]["interruptions"]
    kept = interruption["epochs_kept"]  # at least the epoch shipped when the notice came; on a slow
    # machine the tiny epochs can all be done before the notice is read (the relaunch then only writes)
    assert 1 <= kept <= 4 and interruption["notice"]["action"] == "terminate" and interruption["work_lost_s"] >= 0
    # The relaunch resumed from the checkpoint: the history goes on from it, each epoch once.
    assert history_epochs(out) == [1, 2, 3, 4]
    assert run["resumed"] is True and run["timings"]["resumed_from_epoch"] == kept
    first, second = run["remote"]["instances"]
    assert first["market"] == second["market"] == "spot" and first["attempt"] == 0 and second["attempt"] == 1
    assert second["zone"] != interruption["zone"]  # away from the zone that reclaimed it
    assert_billed_every_instance(run, out, 2)
    assert_nothing_left()


def test_a_cluster_that_loses_one_worker_resumes_as_a_whole(aws_env, tiny_dataset, tmp_path, player, metadata):
    player(metadata=metadata(notice_first_launch(1)))
    out = tmp_path / "out"
    run = run_instance(*spot_spec("ec2-cluster", 2, epochs=6), tiny_dataset, out)

    (interruption,) = run["remote"]["interruptions"]
    assert interruption["worker"] == 1 and 1 <= interruption["epochs_kept"] <= 6
    assert history_epochs(out) == [1, 2, 3, 4, 5, 6]
    assert run["timings"]["resumed_from_epoch"] == interruption["epochs_kept"]
    assert run["cluster"]["workers"] == 2
    # Both machines of the first launch ended and were replaced: four instances billed.
    assert [h["attempt"] for h in run["remote"]["instances"]] == [0, 0, 1, 1]
    assert_billed_every_instance(run, out, 4)
    assert_nothing_left()


def test_after_the_configured_interruptions_the_run_falls_back_to_on_demand(aws_env, tiny_dataset, tmp_path, player,
                                                                            metadata, monkeypatch):
    def spot_at_once(instance_id):  # every spot instance is noticed as soon as it trains
        return described(instance_id).get("InstanceLifecycle") == "spot"

    # The first relaunch's first choice of zone has no capacity: it moves on to the next.
    zones = provision.zones(boto3.client("ec2"))
    placed = []

    def no_capacity_on_relaunch(params, **_):
        zone = params["body"].get("Placement.AvailabilityZone")
        placed.append(zone)
        if len(placed) == 2:  # the first relaunch's first try
            return _Refusal(), {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "injected"}}
        return None

    inject(monkeypatch, "before-call.ec2.RunInstances", no_capacity_on_relaunch)
    stand_in = metadata(spot_at_once)
    player(metadata=stand_in)
    out = tmp_path / "out"
    run = run_instance(*spot_spec(epochs=2, spot_fallback_after=2), tiny_dataset, out)

    assert len(run["remote"]["interruptions"]) == 2
    first, second, third = run["remote"]["instances"]
    assert [first["market"], second["market"], third["market"]] == ["spot", "spot", "on-demand"]
    away = [z for z in zones if z != first["zone"]]  # the relaunch tries every other zone first
    assert placed[:3] == [None, away[0], away[1]] and second["zone"] == away[1]
    assert run["remote"]["market"] == "on-demand" and history_epochs(out) == [1, 2]
    assert len(stand_in.noticed) == 2
    assert_billed_every_instance(run, out, 3)
    assert_nothing_left()


def test_a_zone_without_capacity_moves_the_launch(aws_env, tiny_dataset, tmp_path, player, monkeypatch):
    tried = []

    def refuse_first_zones(params, **_):
        zone = params["body"].get("Placement.AvailabilityZone")
        tried.append(zone)
        if zone in (None, "us-east-1a"):
            return _Refusal(), {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "injected"}}
        return None

    inject(monkeypatch, "before-call.ec2.RunInstances", refuse_first_zones)
    player(fast=True)
    run = run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")
    assert tried == [None, "us-east-1a", "us-east-1b"]
    assert [h["zone"] for h in run["remote"]["instances"]] == ["us-east-1b"]
    assert_nothing_left()


def test_a_configured_subnet_fixes_the_zone(aws_env):
    assert provision.zone_order(["us-east-1a", "us-east-1b"], movable=False) == [None]
    assert provision.zone_order(["us-east-1a", "us-east-1b", "us-east-1c"], avoid="us-east-1a") == [
        "us-east-1b", "us-east-1c", "us-east-1a"]


def test_cleanup_cancels_the_projects_open_spot_requests(aws_env):
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"Key": "project", "Value": "kpbench"}, {"Key": provision.TAG_RUN, "Value": "left-20260101T000000Z-abc123"}]
    ours = ec2.request_spot_instances(
        InstanceCount=1, LaunchSpecification={"ImageId": image, "InstanceType": "c7a.large"},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": tags}])["SpotInstanceRequests"][0]
    other = ec2.request_spot_instances(
        InstanceCount=1, LaunchSpecification={"ImageId": image, "InstanceType": "c7a.large"})["SpotInstanceRequests"][0]
    report = account.cleanup({**ec2_spec()[1]["aws"]})
    assert report["spot_requests"] == [ours["SpotInstanceRequestId"]]
    # AWS keeps a cancelled request listed as "cancelled" a while; moto drops it: either way, not open.
    states = {r["SpotInstanceRequestId"]: r["State"] for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]}
    assert states.get(ours["SpotInstanceRequestId"], "cancelled") == "cancelled"
    assert states[other["SpotInstanceRequestId"]] in ("open", "active")
    for instance in all_instances():  # moto fulfils requests at once: end what they started
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
