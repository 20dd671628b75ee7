"""The EC2 backends against moto in server mode on 127.0.0.1.

Moto does not run user data, so `InstancePlayer` plays the instances: for each instance moto reports
running it runs that instance's real user data (the bootstrap script) with bash on this machine,
against moto's S3, and terminates the instance when the script ends, as its shutdown would.
"""

import base64
import contextlib
import itertools
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
import botocore.exceptions
import pytest
import yaml

from kpbench import KpbenchError
from kpbench.backends import registry
from kpbench.backends.aws import account, api, bucket, bucket_keys, provision
from kpbench.backends.launch import run_instance
from kpbench.backends.local import free_ports
from kpbench.core import run_reader
from kpbench.core.layout import RUN_FILES
from kpbench.core.version import code_version
from specs import run_inputs
from workflow import REPO, checkout, snakemake

SECRET_KEY = "kpbench-test-secret-Zq81xV"
ACCESS_KEY = "AKIAKPBENCHTESTKEY01"
BUCKET = "kpbench-test"
AMI_PARAMETER = "/kpbench-test/ami-id"


def _play_acls_disabled():
    """Play what moto does not: a bucket whose Object Ownership is "bucket owner enforced" (the
    default for new buckets since 2023) refuses any ACL but bucket-owner-full-control with
    AccessControlListNotSupported
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html).
    The server runs in this process, so the launcher and the played instances both meet it."""
    from moto.s3.exceptions import S3ClientError
    from moto.s3.responses import S3Response

    real = S3Response.put_object

    def put_object(self):
        acl = self.headers.get("x-amz-acl")
        grants = [h for h in self.headers.keys() if h.lower().startswith("x-amz-grant-")]
        rule = self.backend.get_bucket(self.bucket_name).ownership_rule
        rule = rule.get("Rules", [{}])[0].get("ObjectOwnership") if isinstance(rule, dict) else rule
        if (acl or grants) and acl != "bucket-owner-full-control" and rule in (None, "BucketOwnerEnforced"):
            raise S3ClientError("AccessControlListNotSupported", "The bucket does not allow ACLs")
        return real(self)

    S3Response.put_object = put_object
    return lambda: setattr(S3Response, "put_object", real)


def _play_instance_role_arn():
    """Play what moto does not: IAM replaces the policy variable ${ec2:SourceInstanceARN} with the ARN
    of the instance whose profile credentials signed the request
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html); moto 5.2
    matches a Resource literally, `*` alone a wildcard (moto/iam/access_control.py), and evaluates
    no policy variable. EC2 names an instance role's session after the instance (aws:userid is
    role-id:instance-id, same page), so the player assumes the role with the instance id as session
    name, and this play puts that instance's ARN into the role's policies."""
    from moto.iam.access_control import AssumedRoleAccessKey

    real = AssumedRoleAccessKey.collect_policies

    def collect_policies(self):
        arn = bucket_keys.instance_arn("us-east-1", self.account_id, self._session_name)
        return [p.replace("${ec2:SourceInstanceARN}", arn) if isinstance(p, str) else p for p in real(self)]

    AssumedRoleAccessKey.collect_policies = collect_policies
    return lambda: setattr(AssumedRoleAccessKey, "collect_policies", real)


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    restore = [_play_acls_disabled(), _play_instance_role_arn()]
    yield f"http://127.0.0.1:{port}"
    for each in restore:
        each()
    server.stop()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch):
    """A fresh moto account, reached through the standard environment variables only."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    for name, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                        "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    boto3.client("ssm").put_parameter(Name=AMI_PARAMETER, Value=image, Type="String")
    account.setup(aws_config())  # what `kpbench aws-setup` (the aws_setup rule) does once per account
    yield moto_endpoint
    assert live_instances() == [], "a test left instances running"


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, small_dataset):
    return small_dataset(tmp_path_factory.mktemp("ec2-data"), n_train=60, seed=5, validation_fraction=0.3)


def aws_config(**overrides):
    config = {"region": "us-east-1", "profile": None, "bucket": BUCKET, "prefix": "kpbench",
              "ami": {"ssm_parameter": AMI_PARAMETER}, "instance_profile": "kpbench-instance",
              "worker_port": 12345, "vpc_id": None, "subnet_id": None, "volume_gb": 50, "max_lifetime_h": 1,
              "budget_usd": 5, "launch_timeout_s": 20, "poll_s": 0.3, "keep_s3": False}
    return {**config, **overrides}


# The harness plays instances on this CPU: the tests rent a CPU type of the catalogue (2 vCPUs), whose
# facts and price the configuration takes from config/catalogue.csv.
TEST_TYPE, TEST_TYPE_USD_PER_HOUR = "c7a.large", 0.10264


def ec2_spec(backend="ec2", workers=1, limits=None, **aws_overrides):
    """(spec, launch) of a tiny EC2 run."""
    return run_inputs(
        {"name": f"test-{backend}", "backend": backend, "instance_type": TEST_TYPE, "workers": workers},
        {"name": "tiny", "epochs": 2, "batch_size": 4, "max_train_images": 16, "max_val_images": 8},
        training={"learning_rate": 1e-3, "seed": 3, "pck_radius_px": 3.0, "prediction_samples": 2,
                  "peak_matmul_size": 128, "warmup_epochs": 0, "scale_learning_rate": True},
        limits={"stall_timeout_s": 120, "deadline_s": 300, **(limits or {})},
        aws=aws_config(**aws_overrides))


def live_instances():
    reservations = boto3.client("ec2").describe_instances(Filters=[
        {"Name": "tag:project", "Values": ["kpbench"]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    return [i["InstanceId"] for r in reservations["Reservations"] for i in r["Instances"]]


def all_instances():
    reservations = boto3.client("ec2").describe_instances()["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def user_data_of(instance_id):
    value = boto3.client("ec2").describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(value["UserData"]["Value"]).decode()


def instance_credentials(instance_id):
    """The instance role's own temporary credentials, as the instance's metadata service hands them
    out: a session of the role named after the instance (see _play_instance_role_arn)."""
    role = f"arn:aws:iam::123456789012:role/{aws_config()['instance_profile']}"
    credentials = boto3.client("sts").assume_role(RoleArn=role, RoleSessionName=instance_id)["Credentials"]
    return {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"]}


# A single instance that trains in no time: it waits for its inputs as the bootstrap does, then
# reports, uploads a result with its manifest and its log, all with the instance role's credentials;
# its run.json has what `kpbench train` reads back (the spec's instance, timings and metrics).
# For tests of the launcher's own steps, where what the instance computes does not matter.
# KPBENCH_BOOT_S: how long it boots first (a real one takes minutes).
FAST_INSTANCE = f"""
import hashlib, json, os, sys, time, boto3, botocore.exceptions
time.sleep(float(os.environ.get("KPBENCH_BOOT_S", 0)))
s3, bucket = boto3.client("s3"), os.environ["KPBENCH_BUCKET"]
folder = os.environ["KPBENCH_FOLDER"].replace({bucket_keys.INSTANCE!r}, os.environ["KPBENCH_INSTANCE_ID"])
owner = {{"ExpectedBucketOwner": os.environ["KPBENCH_ACCOUNT"]}}
def put(name, body):
    s3.put_object(Bucket=bucket, Key=f"{{folder}}/{{name}}", Body=body, ServerSideEncryption="AES256", **owner)
for _ in range(300):
    try:
        s3.get_object(Bucket=bucket, Key=f"{{folder}}/{bucket_keys.BUNDLE}", **owner)
        break
    except botocore.exceptions.ClientError:
        time.sleep(0.2)
else:
    sys.exit(11)
put({bucket_keys.STATUS!r}, json.dumps({{"phase": "training", "worker": 0, "time": time.time()}}))
spec = json.loads(s3.get_object(Bucket=bucket, Key=f"{{folder}}/{bucket_keys.SPEC}", **owner)["Body"].read())
run = {{"instance": spec["instance"], "workload": spec["workload"], "cost": {{}}, "metrics": {{"val_rmse_px": 1.0}},
       "timings": {{"init_s": 0.0, "train_s": 0.1, "images_per_s": 1.0}}}}  # what `kpbench train` prints
files = {{"run.json": json.dumps(run).encode(),
         "history.csv": b"epoch\\n1\\n", "predictions.npz": b"stand-in"}}
assert sorted(files) == {sorted(RUN_FILES)!r}
put({bucket_keys.STEPS!r}, b"{{}}")
for name, body in files.items():
    put(f"result/{{name}}", body)
put({bucket_keys.MANIFEST!r}, json.dumps({{"files": {{n: {{"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}}
                                           for n, b in files.items()}}}}))
put({bucket_keys.STATUS!r}, json.dumps({{"phase": "done", "worker": 0, "time": time.time()}}))
put({bucket_keys.LOG!r}, b"fast stand-in instance")
"""


class InstancePlayer(threading.Thread):
    """Runs each running kpbench instance's user data locally, as the instance would."""

    def __init__(self, workdir, python=sys.executable, extra_env=None, fast=False, metadata=None):
        super().__init__(daemon=True)
        self.workdir, self.python, self.extra_env, self.fast = workdir, python, extra_env or {}, fast
        self.metadata = metadata  # an IMDS stand-in (imds_stand_in): each instance reads its own path
        self.halt = threading.Event()
        self.played, self.processes, self.addresses = set(), {}, {}

    def run(self):
        ec2 = boto3.client("ec2")
        while not self.halt.is_set():
            instances = all_instances()
            running = [i for i in instances if i["State"]["Name"] == "running"
                       and any(t["Key"] == "project" for t in i.get("Tags", []))]
            for instance in running:
                if instance["InstanceId"] not in self.played:
                    self._play(instance, instances)
            ended = {i["InstanceId"] for i in instances if i["State"]["Name"] in ("shutting-down", "terminated")}
            for instance_id, process in list(self.processes.items()):
                if process.poll() is None and instance_id in ended:  # terminated from outside: it dies
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                if process.poll() is not None:
                    del self.processes[instance_id]
                    ec2.terminate_instances(InstanceIds=[instance_id])  # shutdown → terminate
            time.sleep(0.2)

    def _play(self, instance, instances):
        run_id = next(t["Value"] for t in instance["Tags"] if t["Key"] == provision.TAG_RUN)
        # All of the run's instances, pending ones too: one may be seen running before its peers, and
        # moto may list a launch's instances (or their tags) one by one. The run's spec, uploaded
        # before the launch, says how many there are: play none until all are listed.
        peers = [i for i in instances if any(t["Value"] == run_id for t in i.get("Tags", []))]
        if len(peers) < self._machines(run_id):
            return
        # Loopback stand-ins for the instances' private addresses: no traffic leaves this machine.
        addresses = self.addresses.setdefault(run_id, ",".join(f"127.0.0.1:{p}" for p in free_ports(len(peers))))
        instance_id = instance["InstanceId"]
        env = {**os.environ, **instance_credentials(instance_id), "KPBENCH_INSTANCE_ID": instance_id,
               "KPBENCH_PYTHON": self.python,
               "KPBENCH_SHUTDOWN": "true", "KPBENCH_WORKDIR": str(self.workdir / instance_id),
               "KPBENCH_CLUSTER_ADDRESSES": addresses, **self.extra_env}
        if self.metadata:
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.metadata.endpoint(instance_id)
        self.played.add(instance_id)
        command = ["bash", "-c", user_data_of(instance_id)]
        if self.fast:  # the user data's settings, then a stand-in for what the bootstrap does
            header = itertools.takewhile(lambda line: line.startswith("export "), command[2].splitlines()[1:])
            settings = [shlex.split(line)[1].split("=", 1) for line in header]
            env.update(settings)
            command = [sys.executable, "-c", FAST_INSTANCE]
        self.processes[instance_id] = subprocess.Popen(command, env=env, start_new_session=True)

    @staticmethod
    def _machines(run_id):
        """How many instances the run launches, from the spec the launcher uploaded before launching."""
        try:
            body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"kpbench/{run_id}/{bucket_keys.SPEC}",
                                                 ExpectedBucketOwner="123456789012")["Body"].read()
        except botocore.exceptions.ClientError:  # an instance a test made by hand: it plays alone
            return 1
        instance = json.loads(body)["instance"]
        return registry.kind(instance["backend"]).workers(instance)

    def stop(self):
        self.halt.set()
        self.join(timeout=10)
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def player(tmp_path):
    players = []

    def start(**kwargs):
        players.append(InstancePlayer(tmp_path / "instances", **kwargs))
        players[-1].start()
        return players[-1]

    yield start
    for each in players:
        each.stop()


def secret_free(text):
    return SECRET_KEY not in text and ACCESS_KEY not in text


# The IAM action AWS checks for each S3 operation not named after one (each operation's API reference,
# e.g. https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html: HEAD needs s3:GetObject).
S3_ACTIONS = {"HeadBucket": "ListBucket", "ListObjectsV2": "ListBucket", "HeadObject": "GetObject", "CopyObject": "PutObject",
              "DeleteObjects": "DeleteObject", "CreateMultipartUpload": "PutObject", "UploadPart": "PutObject",
              "CompleteMultipartUpload": "PutObject"}


def policy_action(call):
    """The IAM action of a botocore call such as `s3.HeadBucket`."""
    service, operation = call.split(".", 1)
    return f"{service}:{S3_ACTIONS.get(operation, operation) if service == 's3' else operation}"


def run_policy_actions():
    path = os.path.join(str(REPO), "config/iam/run-policy.json")
    with open(path) as handle:
        statements = json.load(handle)["Statement"]
    return {a for s in statements if s["Effect"] == "Allow" for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                                         else s["Action"])}


# --- whole runs -------------------------------------------------------------------------------


def test_ec2_run_trains_on_a_played_instance_and_leaves_nothing_behind(aws_env, tiny_dataset, tmp_path,
                                                                      player, capsys, monkeypatch):
    sent = []
    inject(monkeypatch, "provide-client-params.ec2.RunInstances", lambda params, **_: sent.append(dict(params)))
    calls, unpinned = set(), []
    inject(monkeypatch, "before-call", lambda event_name, **_: calls.add(event_name.split(".", 1)[1]))

    def pinned(params, model, event_name, **_):  # every bucket call names the bucket's owner
        if "ExpectedBucketOwner" in model.input_shape.members and params.get("ExpectedBucketOwner") != "123456789012":
            unpinned.append(event_name)

    inject(monkeypatch, "before-parameter-build.s3", pinned)
    player()
    prices = {"ebs_gp3_usd_per_gb_month": 0.08, "public_ipv4_usd_per_hour": 0.005, "price_date": "2025-01-01"}
    run = run_instance(*ec2_spec(prices=prices), tiny_dataset, tmp_path / "out")
    output = capsys.readouterr()

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".costs", "history.csv", "predictions.npz",
                                                                     "run.json"]
    assert len(run["timings"]["epoch_s"]) == 2 and run["metrics"]["val_rmse_px"] > 0
    assert run["contention"]["samples"] >= 2  # sampled on the instance, around its worker
    assert run["code"] == code_version()  # the launcher's: the instance ran the launcher's bundle
    remote = run["remote"]
    assert len(remote["instance_ids"]) == 1 and remote["instance_type"] == TEST_TYPE
    # Per-second billing from "running" to termination, a minute at least; instance, gp3 volume
    # (50 GB at 0.08 USD per GB and 30-day month) and public IPv4 address.
    assert remote["billed_s"] >= 60 and remote["billed_s"] == int(remote["billed_s"])
    assert run["cost"]["hours"] == pytest.approx(remote["billed_s"] / 3600)
    assert run["cost"]["usd"] == pytest.approx(remote["billed_s"] / 3600 * (TEST_TYPE_USD_PER_HOUR + 50 * 0.08 / 720 + 0.005))
    (bill,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / ".costs").iterdir()]
    assert bill["outcome"] == "collected" and bill["usd"] == pytest.approx(run["cost"]["usd"])

    (instance,) = [i for i in all_instances() if i["InstanceId"] == remote["instance_ids"][0]]
    assert instance["State"]["Name"] == "terminated"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["ClientToken"] == provision.client_token(remote["run_id"])
    (params,) = sent  # moto drops the profile association on termination: check what was asked
    assert params["IamInstanceProfile"] == {"Name": "kpbench-instance"}
    assert params["BlockDeviceMappings"][0]["DeviceName"] == provision.root_device(boto3.client("ec2"), instance["ImageId"])
    assert params["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["project"] == "kpbench" and tags[provision.TAG_RUN] == remote["run_id"] and provision.TAG_EXPIRES in tags
    behaviour = boto3.client("ec2").describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior")
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"

    # Every call the launcher made is one the documented run policy grants (config/iam/run-policy.json).
    assert not {c for c in calls if c.startswith("iam.")}
    # (GetCallerIdentity needs no permission: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html)
    assert {policy_action(c) for c in calls} - {"sts:GetCallerIdentity"} <= run_policy_actions(), calls
    assert unpinned == [] and "s3.PutObject" in calls
    assert "export KPBENCH_ACCOUNT=123456789012" in user_data_of(instance["InstanceId"])

    # Teardown: no security group of the run, no S3 objects of the run.
    groups = boto3.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:project", "Values": ["kpbench"]}])["SecurityGroups"]
    assert groups == []
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="kpbench/").get("KeyCount") == 0
    assert "running" in output.out and "terminating" in output.out
    # Each instance's phase changes reach the terminal (stderr), named by run and instance.
    phases = re.findall(rf"test-ec2 r1: \[ *\d+ s\] {instance['InstanceId']}: (\w+)", output.err)
    assert len(set(phases)) >= 2 and phases[-1] == "done"

    # No secret in user data, the launcher's output (the rule's log), the instance's log or results.
    user_data = user_data_of(instance["InstanceId"])
    assert "KPBENCH_BUCKET=kpbench-test" in user_data and secret_free(user_data)
    assert secret_free(output.out + output.err)
    for path in [*(p for p in (tmp_path / "out").rglob("*") if p.is_file()), *(tmp_path / "instances").rglob("*.log")]:
        assert secret_free(path.read_bytes().decode(errors="replace")), path


def test_an_ec2_probe_runs_its_capped_steps_and_leaves_nothing_behind(aws_env, tiny_dataset, tmp_path, player):
    from kpbench.forecast.probe import probe_facts

    player()
    spec, launch = ec2_spec()
    spec = {**spec, "probe": {"epochs": 2, "steps_per_epoch": 1, "warmup_steps": 1}}  # as settings.probe_spec
    run = run_instance(spec, launch, tiny_dataset, tmp_path / "out")
    assert len(run["probe"]["step_s"]) == 2 and run["workload"]["epochs_requested"] == 2
    assert probe_facts(run)["steady_steps"] == 1 and run["remote"]["billed_s"] >= 60
    assert live_instances() == []
    assert boto3.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:project", "Values": ["kpbench"]}])["SecurityGroups"] == []
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="kpbench/").get("KeyCount") == 0


def test_ec2_cluster_trains_two_played_instances_as_one_cluster(aws_env, tiny_dataset, tmp_path, player):
    player()
    run = run_instance(*ec2_spec("ec2-cluster", 2, keep_s3=True), tiny_dataset, tmp_path / "out")

    cluster = run["cluster"]
    assert cluster["workers"] == 2 and cluster["global_batch"] == 8
    assert cluster["scaled_learning_rate"] == pytest.approx(2e-3)
    assert len(cluster["median_step_s_per_worker"]) == 2
    assert cluster["wait_estimate"]["compute_step_s"] > 0 and cluster["wait_estimate"]["steps"] > 0
    assert cluster["allreduce"]["workers"] == 2 and len(cluster["allreduce"]["sizes"]) > 10
    assert len(run["remote"]["instance_ids"]) == 2

    s3 = boto3.client("s3")
    prefix = f"kpbench/{run['remote']['run_id']}"
    chief, worker = (bucket_keys.instance_folder(prefix, "us-east-1", "123456789012", i) for i in run["remote"]["instance_ids"])
    for folder in (chief, worker):  # each instance reads the cluster spec from its own folder
        spec = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{folder}/{bucket_keys.CLUSTER}")["Body"].read())
        assert [w["instance_id"] for w in spec["workers"]] == run["remote"]["instance_ids"]
        assert all(w["address"].endswith(":12345") for w in spec["workers"])
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert {f"{chief}/{bucket_keys.MANIFEST}", f"{chief}/{bucket_keys.STEPS}", f"{worker}/{bucket_keys.STEPS}"} <= set(keys)
    for key in keys:  # every object private and encrypted at rest
        assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256", key
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values())


def _play_ec2_vcpu_quotas(monkeypatch, vcpus):
    """Play what moto does not: moto 5.2's Service Quotas knows only VPC quotas and answers
    NoSuchResourceException for EC2's, which `kpbench plan` reads as 0 vCPUs. A real account answers
    GetServiceQuota with its applied value for each EC2 vCPU quota
    (https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetServiceQuota.html);
    here every one is `vcpus`. The server runs in this process, so the plan rule's subprocess meets it."""
    from moto.servicequotas.models import ServiceQuotasBackend

    real = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self, service_code, quota_code):
        if service_code != "ec2":
            return real(self, service_code, quota_code)
        return {"ServiceCode": "ec2", "QuotaCode": quota_code, "Value": float(vcpus), "Unit": "None",
                "Adjustable": True, "GlobalQuota": False}

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)


def test_four_ec2_runs_at_once_through_snakemake_share_one_setup(aws_env, tmp_path, player, monkeypatch):
    """`snakemake --cores 8` starts every EC2 train job at once: they must share the one bucket, role
    and instance profile that the aws_setup rule makes once (none of them creates any, so none races
    another: EntityAlreadyExists, BucketAlreadyOwnedByYou), wait for it and for the plan, and each
    tear its own run down. The train outputs are the targets: no paper is built."""
    account.cleanup(aws_config(), everything=True)  # the workflow's aws_setup makes them, not the fixture
    _play_ec2_vcpu_quotas(monkeypatch, vcpus=64)
    player(fast=True)
    (tmp_path / "tree").mkdir()
    tree = checkout(tmp_path / "tree")
    names = [f"ec2-{letter}" for letter in "abcd"]
    rows = [{"name": name, "backend": "ec2", "instance_type": TEST_TYPE} for name in names]
    overlay = {"repeats": 1, "instances": rows, "limits": {"stall_timeout_s": 120, "deadline_s": 300},
               "aws": aws_config(boot_timeout_s=60)}
    (tree / "overlay.yaml").write_text(json.dumps(overlay))  # JSON is YAML
    targets = [f"results/runs/{name}/r1/run.json" for name in names]
    result = snakemake(tree, "--cores", "8", *targets, "--configfile", "tiny.yaml", "overlay.yaml")
    log = result.stderr  # Snakemake's own log: when each job started ("rule x:") and finished

    for name in names:
        run = json.loads((tree / f"results/runs/{name}/r1/run.json").read_text())
        assert run_reader.finished(run), name  # a "measured" row in the summary, not a "failed" one
        assert run["remote"]["run_id"].startswith(f"{name}-") and len(run["remote"]["instance_ids"]) == 1
    # One set-up and one plan for all four runs, both finished before any run starts; the four at once.
    assert log.count("rule aws_setup:") == 1 and log.count("rule plan:") == 1 and log.count("rule train:") == 4
    first_train, first_trained = log.index("rule train:"), log.index("(Rule: train)")
    assert max(log.index("(Rule: aws_setup)"), log.index("(Rule: plan)")) < first_train
    assert log.rindex("rule train:") < first_trained
    assert len((tree / "benchmarks/aws_setup.tsv").read_text().splitlines()) == 2  # header and one run
    # The plan's quota check counts the four runs at once: 4 x 2 vCPUs of the standard quota.
    assert "vCPU quotas suffice: Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances 8" in (tree / "logs/plan.log").read_text()
    # The plan kept the spot prices in effect, as EC2 answered them (moto: one price per zone offering the type).
    snapshot = json.loads((tree / "results/prices/spot.json").read_text())
    assert snapshot["source"].startswith("DescribeSpotPriceHistory") and snapshot["prices"]
    assert {p["instance_type"] for p in snapshot["prices"]} == {TEST_TYPE}
    iam = boto3.client("iam")
    assert [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]] == [BUCKET]
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == [aws_config()["instance_profile"]]
    profiles = iam.list_instance_profiles()["InstanceProfiles"]
    assert [(p["InstanceProfileName"], [r["RoleName"] for r in p["Roles"]]) for p in profiles] == [
        (aws_config()["instance_profile"], [aws_config()["instance_profile"]])]
    assert len({provision.tag(i, provision.TAG_RUN) for i in all_instances()}) == 4
    assert leftovers() == NOTHING


# --- faults at each step ----------------------------------------------------------------------


class _Refusal:
    status_code = 400
    headers = {}


def inject(monkeypatch, event, handler):
    """Every session kpbench opens gets `handler` on `event` (botocore's own hook points)."""
    real = api.session

    def patched(config):
        session = real(config)
        session.events.register(event, handler)
        return session

    monkeypatch.setattr(api, "session", patched)


@pytest.mark.parametrize("code, says", [
    ("VcpuLimitExceeded", "L-1216C47A"),  # a C type: the standard quota
    ("InstanceLimitExceeded", "instance limit"),
    ("InsufficientInstanceCapacity", f"no spare {TEST_TYPE} capacity"),
    ("Unsupported", "not offered"),
])
def test_launch_refusals_are_explained_and_leave_nothing(aws_env, tiny_dataset, tmp_path, monkeypatch, code, says):
    inject(monkeypatch, "before-call.ec2.RunInstances",
           lambda **_: (_Refusal(), {"Error": {"Code": code, "Message": f"injected {code}"}}))
    with pytest.raises(KpbenchError, match=says):
        run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")
    assert all_instances() == []
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="kpbench/").get("KeyCount") == 0
    assert not (tmp_path / "out" / "run.json").exists()


def test_unknown_ami_is_refused_before_launch(aws_env, tiny_dataset, tmp_path):
    with pytest.raises(KpbenchError, match="unknown AMI"):
        run_instance(*ec2_spec(ami={"id": "ami-0123456789abcdef0"}), tiny_dataset, tmp_path / "out")
    with pytest.raises(KpbenchError, match="unknown AMI: SSM parameter /nope"):
        run_instance(*ec2_spec(ami={"ssm_parameter": "/nope"}), tiny_dataset, tmp_path / "out")
    assert all_instances() == []


def test_missing_credentials_get_plain_instructions(aws_env, tiny_dataset, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(KpbenchError, match="no AWS credentials found"):
        run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")


def test_instance_that_never_runs_times_out_and_is_terminated(aws_env, tiny_dataset, tmp_path, monkeypatch):
    def still_pending(parsed, **_):
        for reservation in parsed.get("Reservations", []):
            for instance in reservation["Instances"]:
                if instance["State"]["Name"] == "running":
                    instance["State"] = {"Code": 0, "Name": "pending"}

    inject(monkeypatch, "after-call.ec2.DescribeInstances", still_pending)
    with pytest.raises(KpbenchError, match="not running within 2 s"):
        run_instance(*ec2_spec(launch_timeout_s=2), tiny_dataset, tmp_path / "out")
    assert [i["State"]["Name"] for i in all_instances()] == ["terminated"]


def test_an_instance_that_ends_before_it_is_seen_running_reports_why(aws_env, tiny_dataset, tmp_path, monkeypatch):
    # EC2 ends a launch it cannot place: "Server.InsufficientInstanceCapacity" (EC2 API Reference, StateReason).
    def no_capacity(parsed, **_):
        for reservation in parsed.get("Reservations", []):
            for instance in reservation["Instances"]:
                instance["State"] = {"Code": 48, "Name": "terminated"}
                instance["StateReason"] = {"Code": "Server.InsufficientInstanceCapacity",
                                           "Message": "Server.InsufficientInstanceCapacity: Insufficient capacity."}

    inject(monkeypatch, "after-call.ec2.DescribeInstances", no_capacity)
    with pytest.raises(KpbenchError, match=r"(?s)terminated without a result before it was seen running "
                                           r"\(Server.InsufficientInstanceCapacity.*no log uploaded"):
        run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")
    assert not (tmp_path / "out" / "run.json").exists()


def test_no_result_before_the_deadline_ends_the_run(aws_env, tiny_dataset, tmp_path):
    with pytest.raises(KpbenchError, match="no result within 3 s"):
        run_instance(*ec2_spec(limits={"deadline_s": 3}), tiny_dataset, tmp_path / "out")
    assert [i["State"]["Name"] for i in all_instances()] == ["terminated"]


def test_failed_training_on_the_instance_reports_its_log(aws_env, tiny_dataset, tmp_path, player):
    player(extra_env={"KPBENCH_INJECT_FAULT": "crash:0:1"})
    with pytest.raises(KpbenchError, match=r"(?s)1 of 1 instance\(s\) failed.*exit status 3"):
        run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")
    assert not (tmp_path / "out" / "run.json").exists()
    (bill,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / ".costs").iterdir()]
    assert bill["outcome"] == "failed" and bill["billed_s"] >= 60 and bill["usd"] > 0  # billed all the same


def test_failed_bootstrap_is_reported(aws_env, tiny_dataset, tmp_path, player):
    # No usable Python on the instance, and no working AWS CLI either: nothing can even be reported.
    broken = tmp_path / "cli" / "aws"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\nexit 127\n")
    broken.chmod(0o755)
    player(python="/bin/false", extra_env={"PATH": f"{broken.parent}:{os.environ['PATH']}"})
    with pytest.raises(KpbenchError, match="terminated without a result"):
        run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")


AWS_CLI = """#!{python}
# Plays the AWS CLI the Deep Learning AMIs ship: `aws s3 cp [--only-show-errors] [--sse AES256] SRC DST`.
import sys, boto3
args = [a for a in sys.argv[1:] if a not in ("s3", "cp", "--only-show-errors")]
extra = None
if "--sse" in args:
    at = args.index("--sse")
    extra = {{"ServerSideEncryption": args[at + 1]}}
    del args[at:at + 2]
source, target = args
client = boto3.client("s3")
if source.startswith("s3://"):
    bucket, key = source[5:].split("/", 1)
    client.download_file(bucket, key, target)
else:
    bucket, key = target[5:].split("/", 1)
    client.upload_file(source, bucket, key, ExtraArgs=extra)
"""


def test_a_bootstrap_that_fails_before_python_is_ready_still_reports(aws_env, tiny_dataset, tmp_path, player):
    """No usable Python on the instance: the AWS CLI uploads its log and a failed status."""
    cli = tmp_path / "cli" / "aws"
    cli.parent.mkdir()
    cli.write_text(AWS_CLI.format(python=sys.executable))
    cli.chmod(0o755)
    player(python="/bin/false", extra_env={"PATH": f"{cli.parent}:{os.environ['PATH']}"})
    with pytest.raises(KpbenchError, match=r"(?s)1 of 1 instance\(s\) failed.*exit status 1.*kpbench bootstrap on"):
        run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_stopping_the_launcher_during_the_wait_terminates_everything(aws_env, tiny_dataset, tmp_path, stop):
    spec, launch = ec2_spec()
    (tmp_path / "launch.json").write_text(json.dumps(launch))
    launcher = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "kpbench", "train", "--spec", json.dumps(spec),
         "--launch", str(tmp_path / "launch.json"), "--dataset", str(tiny_dataset), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a shell that starts jobs in the background hands them SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not live_instances():
        assert launcher.poll() is None and time.time() < deadline, launcher.communicate()
        time.sleep(0.2)
    time.sleep(1.0)  # now inside the wait loop
    launcher.send_signal(stop)
    try:
        out, err = launcher.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        launcher.send_signal(signal.SIGABRT)  # faulthandler prints where every thread was stuck
        out, err = launcher.communicate()
        pytest.fail(f"the launcher did not stop within 120 s of {stop.name}:\n{out}\n{err}")
    assert launcher.returncode == 1
    assert "interrupted" in err and "terminating" in out
    assert live_instances() == []


# --- the pieces -------------------------------------------------------------------------------


def test_security_group_admits_only_its_members_on_the_worker_port(aws_env):
    ec2 = boto3.client("ec2")
    group = provision.create_security_group(ec2, "kpbench-test", "run-1", provision.group_vpc(ec2))
    provision.authorize_peers(ec2, group, 12345)
    (rule,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (12345, 12345, "tcp")
    assert rule["IpRanges"] == [] and rule["Ipv6Ranges"] == []
    assert [pair["GroupId"] for pair in rule["UserIdGroupPairs"]] == [group]


def test_instance_profile_reaches_only_the_instances_own_folder(aws_env):
    iam = boto3.client("iam")
    arn = account.ensure_instance_profile(iam, "kpbench-instance", BUCKET, "kpbench")
    assert arn == account.ensure_instance_profile(iam, "kpbench-instance", BUCKET, "kpbench")  # idempotent
    policy = iam.get_role_policy(RoleName="kpbench-instance", PolicyName="kpbench-s3")["PolicyDocument"]
    assert policy == account.instance_role_policy(BUCKET, "kpbench")
    folder = f"arn:aws:s3:::{BUCKET}/kpbench/*/${{ec2:SourceInstanceARN}}"
    assert [(s["Action"], s["Resource"]) for s in policy["Statement"]] == [
        ("s3:GetObject", f"{folder}/input/*"),
        ("s3:PutObject", [f"{folder}/{name}" for name in ("status.json", "log.txt", "steps.json", "allreduce.json",
                                                          "checkpoint.tar", "result/*")])]
    # The documented policy (README, config/iam) is the one set-up puts on the role.
    path = os.path.join(str(REPO),
                        "config/iam/instance-role-policy.json")
    with open(path) as handle:
        assert json.load(handle) == account.instance_role_policy("BUCKET", "PREFIX")


@contextlib.contextmanager
def iam_enforced(endpoint):
    """Moto checks every request against the caller's IAM policies (INITIAL_NO_AUTH_ACTION_COUNT 0)."""
    def reset(count):
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count, method="POST",
                                                      headers={"Content-Type": "text/plain"}))

    reset(b"0")
    try:
        yield
    finally:
        reset(b"inf")


def test_an_instance_of_one_run_is_refused_another_runs_objects(aws_env):
    """With its role's own credentials, under IAM enforcement, an instance reads its inputs and writes
    its outputs, and is refused (403) every other object: another run's inputs and outputs, and
    the inputs of its own run, which only the launcher writes."""
    s3, folders = boto3.client("s3"), {}
    for run, instance_id in (("run-a", "i-0aaaaaaaaaaaaaaa1"), ("run-b", "i-0bbbbbbbbbbbbbbb2")):
        root = bucket_keys.run_prefix("kpbench", run)
        folders[run] = bucket_keys.instance_folder(root, "us-east-1", "123456789012", instance_id)
        for name in bucket_keys.INPUTS:
            bucket.put_private(s3, BUCKET, f"{root}/{name}", b"the launcher's copy")
            bucket.put_private(s3, BUCKET, f"{folders[run]}/{name}", run.encode())
    credentials = instance_credentials("i-0aaaaaaaaaaaaaaa1")
    instance = api.pin_bucket_owner(boto3.client("s3", aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                                                 aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                                                 aws_session_token=credentials["AWS_SESSION_TOKEN"]), "123456789012")
    own = bucket.Exchange(instance, BUCKET, folders["run-a"])
    other = own.folder(folders["run-b"])
    launchers = own.folder(bucket_keys.run_prefix("kpbench", "run-a"))
    with iam_enforced(aws_env):
        assert own.get(bucket_keys.SPEC)[1] == b"run-a"
        own.put_json(bucket_keys.STATUS, {"phase": "training"})
        own.put_json(bucket_keys.result("run.json"), {})
        refused = {
            "another run's spec": lambda: other.get_json(bucket_keys.SPEC),
            "another run's status": lambda: other.put_json(bucket_keys.STATUS, {"phase": "failed"}),
            "another run's bundle": lambda: other.put_json(bucket_keys.BUNDLE, {}),
            "another run's result": lambda: other.get_json(bucket_keys.result("run.json")),
            "its own bundle": lambda: own.put_json(bucket_keys.BUNDLE, {}),
            "its run's launcher copy": lambda: launchers.get_json(bucket_keys.SPEC),
        }
        for what, call in refused.items():
            with pytest.raises(botocore.exceptions.ClientError) as error:
                call()
            assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, what
            assert error.value.response["Error"]["Code"] == "AccessDenied", what
        # Refused reads look missing to the instance's waits: without s3:ListBucket AWS answers a
        # missing key with 403 too.
        assert own.get(bucket_keys.CLUSTER) is None
    assert s3.get_object(Bucket=BUCKET, Key=f"{folders['run-b']}/{bucket_keys.BUNDLE}")["Body"].read() == b"run-b"


def _user_keys(iam, name, policy):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="kpbench", PolicyDocument=json.dumps(policy))
    keys = iam.create_access_key(UserName=name)["AccessKey"]
    return keys["AccessKeyId"], keys["SecretAccessKey"]


def test_the_documented_run_policy_is_enough_for_a_run(aws_env, tiny_dataset, tmp_path, player, monkeypatch):
    """The launcher, as an IAM user holding exactly config/iam/run-policy.json, runs a played EC2 run
    to its end under moto's IAM enforcement, and is refused what the policy does not grant.

    What moto cannot check: it authorises every EC2 action against the resource "*" (so the policy's
    EC2 resource ARNs are replaced by "*" here, actions kept), evaluates no Condition outside trust
    policies (aws:RequestTag, aws:ResourceTag, ec2:CreateAction, s3:prefix, iam:PassedToService), and
    never asks for iam:PassRole on RunInstances; it names some S3 actions after their operation
    (s3:HeadBucket, and since moto 5.2.6 s3:HeadObject and s3:ListObjectsV2, where AWS checks
    s3:ListBucket and s3:GetObject: S3_ACTIONS, with the API reference of each operation), so each
    statement also allows those operations' names; and it
    authorises a multi-object delete's s3:DeleteObject against the bucket's ARN before it checks each
    key (moto/s3/responses.py, _bucket_response_post), where AWS checks s3:DeleteObject per key only
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html), so the bucket's ARN is
    added beside the policy's kpbench/* for that action. S3 actions and resources are otherwise
    checked as written."""
    root = str(REPO)
    with open(os.path.join(root, "config/iam/run-policy.json")) as handle:
        policy = json.loads(handle.read().replace("BUCKET", BUCKET).replace("ACCOUNT", "123456789012"))
    policy["Statement"].append({"Effect": "Allow", "Action": "s3:DeleteObject",  # moto's bucket-level check
                                "Resource": f"arn:aws:s3:::{BUCKET}"})
    for statement in policy["Statement"]:
        if all(":ec2:" in r for r in ([statement["Resource"]] if isinstance(statement["Resource"], str)
                                      else statement["Resource"])):
            statement["Resource"] = "*"
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        statement["Action"] = actions + [f"s3:{operation}" for operation, action in S3_ACTIONS.items()
                                         if f"s3:{action}" in actions]  # moto's names for them
    iam = boto3.client("iam")
    admin = _user_keys(iam, "kpbench-test-admin", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    runner = _user_keys(iam, "kpbench-runner", policy)
    # The test and the player act as an administrator; EC2 itself hands instances their role's
    # credentials (its trust policy names the EC2 service, which the player cannot be).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", admin[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", admin[1])
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    from moto.iam.access_control import IAMRequestBase
    monkeypatch.setattr(IAMRequestBase, "_is_assuming_role_operation", lambda self, arn: False)
    monkeypatch.setattr(api, "session", lambda config: boto3.Session(aws_access_key_id=runner[0],
                                                                     aws_secret_access_key=runner[1],
                                                                     region_name=config["region"]))
    player(fast=True)
    with iam_enforced(aws_env):
        run = run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")
        as_runner = api.session(aws_config())
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            as_runner.client("s3").put_object(Bucket=BUCKET, Key="elsewhere/x", Body=b"")
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            as_runner.client("iam").list_roles()
    assert run["metrics"]["val_rmse_px"] == 1.0
    assert leftovers()["instances"] == [] and leftovers()["security groups"] == []
    assert leftovers()["objects"] == 0


def test_ami_name_pattern_picks_the_newest_match(aws_env):
    ec2 = boto3.client("ec2")
    images = ec2.describe_images(Owners=["amazon"])["Images"]
    name = images[0]["Name"]
    chosen = provision.resolve_ami({"ami": {"name_pattern": name[:6] + "*", "owners": ["amazon"]}}, ec2, None)
    candidates = [i for i in images if i["Name"].startswith(name[:6])]
    assert chosen == max(candidates, key=lambda i: i.get("CreationDate", ""))["ImageId"]
    with pytest.raises(KpbenchError, match="no image named like 'no-such-ami-\\*'"):
        provision.resolve_ami({"ami": {"name_pattern": "no-such-ami-*"}}, ec2, None)


def test_retried_launch_reuses_its_client_token():
    """moto stores ClientToken without de-duplicating, so the retry contract is checked on a stub."""
    from botocore.exceptions import ClientError

    class StubEc2:
        def __init__(self):
            self.calls = []

        def run_instances(self, **params):
            self.calls.append(params)
            if len(self.calls) == 1:
                raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}}, "RunInstances")
            return {"Instances": [{"InstanceId": "i-1"}]}

    stub = StubEc2()
    params = provision.launch_params(instance_type="g4dn.xlarge", count=1, ami="ami-1", user_data="#!/bin/bash",
                               group_id="sg-1", profile_name="p", run_id="run-7", instance_name="x",
                               max_lifetime_h=1)
    assert provision.run_instances(stub, params, pause_s=0) == [{"InstanceId": "i-1"}]
    assert len(stub.calls) == 2 and stub.calls[0]["ClientToken"] == stub.calls[1]["ClientToken"]
    assert stub.calls[0]["ClientToken"] == provision.client_token("run-7") != provision.client_token("run-8")


def test_a_refusal_that_is_not_transient_is_not_retried():
    from botocore.exceptions import ClientError

    calls = []

    class StubEc2:
        def run_instances(self, **params):
            calls.append(params)
            raise ClientError({"Error": {"Code": "VcpuLimitExceeded", "Message": "no"}}, "RunInstances")

    with pytest.raises(ClientError):
        provision.run_instances(StubEc2(), {"ClientToken": "t"}, pause_s=0)
    assert len(calls) == 1


def test_quota_messages_name_the_quota_to_raise():
    from botocore.exceptions import ClientError

    def refusal(code, instance_type):
        return str(api.explain(ClientError({"Error": {"Code": code, "Message": "m"}}, "RunInstances"),
                               instance_type, "eu-west-1"))

    assert "Running On-Demand P instances" in refusal("VcpuLimitExceeded", "p3.2xlarge")
    assert "L-417A185B" in refusal("VcpuLimitExceeded", "p2.xlarge")
    assert "L-1216C47A" in refusal("VcpuLimitExceeded", "c5.4xlarge")
    assert "eu-west-1" in refusal("InsufficientInstanceCapacity", "g5.xlarge")
    assert "AWS error Weird: m" == refusal("Weird", "g5.xlarge")


def test_user_data_sets_the_lifetime_and_carries_no_credentials(monkeypatch):
    from kpbench.backends.aws.instance import user_data

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    script = user_data("bucket-1", "kpbench/run-1", "eu-west-1", 1.5, gpus=1, account="123456789012")
    assert script.startswith("#!/bin/bash\n")
    assert "export KPBENCH_MAX_MINUTES=90" in script
    assert "tensorflow[and-cuda]==2.21.0" in script and "numpy==2.4.6" in script  # the tested versions
    assert secret_free(script) and "AWS_SECRET" not in script and "AWS_ACCESS" not in script
    syntax = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr


def test_cleanup_terminates_tagged_instances_and_removes_their_runs(aws_env):
    ec2, s3 = boto3.client("ec2"), boto3.client("s3")
    image = boto3.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]

    def launch(run_id, expires):
        tags = [{"Key": "project", "Value": "kpbench"}, {"Key": provision.TAG_RUN, "Value": run_id},
                {"Key": provision.TAG_EXPIRES, "Value": expires}]
        ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])

    bucket.ensure_bucket(s3, BUCKET, "us-east-1")
    for run_id in ("old", "young"):
        bucket.put_private(s3, BUCKET, f"kpbench/{run_id}/input/spec.json", b"{}")
    launch("old", "2020-01-01T00:00:00Z")
    launch("young", "2999-01-01T00:00:00Z")
    ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)  # not ours

    report = account.cleanup(aws_config(), expired_only=True)
    assert report["runs"] == ["old"] and len(report["terminated"]) == 1 and report["s3_objects_removed"] == 1
    assert len(live_instances()) == 1
    report = account.cleanup(aws_config())
    assert report["runs"] == ["young"] and live_instances() == []
    assert [i["State"]["Name"] for i in all_instances()].count("running") == 1  # the untagged one stays
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="kpbench/").get("KeyCount") == 0


def test_cleanup_command_runs_against_the_config(aws_env, tmp_path):
    overlay = tmp_path / "aws.yaml"
    overlay.write_text(f"aws:\n  bucket: {BUCKET}\n")
    result = subprocess.run([sys.executable, "-m", "kpbench", "cleanup", "--configfile", "config/config.yaml",
                             str(overlay)], capture_output=True, text=True,
                            cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert "terminated 0 instance(s)" in result.stdout


def test_aws_matrix_plans_first_and_never_trains_retired_rows(tmp_path):
    """A dry run of the EC2 matrix: one plan job before every current row's training, none for
    the retired types; without a bucket the workflow refuses to start."""
    root = str(REPO)
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "results", "--configfile",
               "config/aws.yaml"]
    refused = subprocess.run(command, cwd=root, capture_output=True, text=True)
    assert refused.returncode != 0 and "need aws.bucket" in refused.stdout + refused.stderr
    result = subprocess.run([*command, "--config", 'aws={"bucket": "my-bucket"}'], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    trained = sorted(line.split("instance=", 1)[1].split(",")[0] for line in result.stdout.splitlines()
                     if line.strip().startswith("wildcards: instance="))
    repeats = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["repeats"]
    current = ["2x-g4dn.xlarge", "4x-g4dn.xlarge", "c5.4xlarge", "g4dn.xlarge", "g5.xlarge", "g6.xlarge"]
    assert trained == sorted(current * repeats)  # each current row, once per repeat
    assert result.stdout.count("rule plan:") == 1
    assert result.stdout.count("rule aws_setup:") == 1  # one set-up for every run: no races to create


def test_an_ec2_row_without_an_instance_type_is_refused(tmp_path):
    root = str(REPO)
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("aws: {bucket: b}\ninstances:\n  - {name: gpu, backend: ec2, usd_per_hour: 1.0, "
                       "price_date: '2025-01-01'}\n")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "results", "--configfile",
                             str(overlay)], cwd=root, capture_output=True, text=True)
    assert result.returncode != 0
    assert "instance gpu (backend ec2) needs instance_type" in result.stdout + result.stderr


# --- what a real account does that moto does not (issue 12) ---------------------------------


class _Raw:
    def __init__(self, body):
        self.body = body

    def stream(self, **_):
        yield self.body


class Faults:
    """Fault injection below botocore's retry layer: the first k calls of an operation (of those whose
    URL contains a given part, when one is given) get an error answer, as EC2 gives them under
    eventual consistency or throttling
    (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html) and S3 under load
    (SlowDown, https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
    Plan: Operation=(code, k) or (code, k, url part)."""

    STATUS = {"RequestLimitExceeded": 503, "SlowDown": 503, "AccessDenied": 403}

    def __init__(self, **plan):
        self.left = {op: [faults[0], faults[1], faults[2] if len(faults) > 2 else ""] for op, faults in plan.items()}
        self.hits = []

    def lift(self):
        for fault in self.left.values():
            fault[1] = 0

    def __call__(self, request, event_name, **_):
        from botocore.awsrequest import AWSResponse

        service, op = event_name.split(".")[1:3]
        fault = self.left.get(op)
        if not fault or fault[1] <= 0 or fault[2] not in request.url:
            return None
        code = fault[0]
        fault[1] -= 1
        self.hits.append(op)
        error = f"<Error><Code>{code}</Code><Message>injected</Message></Error>"
        if service == "ec2":
            body = f"<Response><Errors>{error}</Errors><RequestID>r-1</RequestID></Response>"
        elif op == "DeleteObjects" and code == "AccessDenied":  # S3 answers that key by key, with 200
            body, code = f"<DeleteResult>{error.replace('<Code>', '<Key>k</Key><Code>')}</DeleteResult>", "200"
        else:
            body = error
        status = 200 if code == "200" else self.STATUS.get(code, 400)
        return AWSResponse(request.url, status, {}, _Raw(body.encode()))


# Every step of an EC2 run that calls AWS: its operation, a part of its URL that singles the step
# out, the refusal that fails it for good, whether it is part of the teardown, and what AWS documents
# answering for a while before such a call succeeds: throttling (RequestLimitExceeded; S3's SlowDown)
# and, right after a resource is made, NotFound (eventual consistency, see Faults).
EC2_BUSY, S3_BUSY = ["RequestLimitExceeded"], ["SlowDown"]
RUN_STEPS = {
    "create security group": ("CreateSecurityGroup", "", "UnauthorizedOperation", False, EC2_BUSY),
    "authorise its rule": ("AuthorizeSecurityGroupIngress", "", "UnauthorizedOperation", False,
                           EC2_BUSY + ["InvalidGroup.NotFound"]),
    "launch": ("RunInstances", "", "UnauthorizedOperation", False, EC2_BUSY),
    "describe instances": ("DescribeInstances", "", "UnauthorizedOperation", False,
                           EC2_BUSY + ["InvalidInstanceID.NotFound"]),
    "upload inputs": ("PutObject", "", "AccessDenied", False, S3_BUSY),
    "copy inputs to each instance": ("CopyObject", "", "AccessDenied", False, S3_BUSY),
    "read statuses": ("GetObject", bucket_keys.STATUS, "AccessDenied", False, S3_BUSY),
    "download the result": ("GetObject", "/result/", "AccessDenied", False, S3_BUSY),
    "terminate": ("TerminateInstances", "", "UnauthorizedOperation", True, EC2_BUSY + ["InvalidInstanceID.NotFound"]),
    "delete the security group": ("DeleteSecurityGroup", "", "UnauthorizedOperation", True,
                                  EC2_BUSY + ["InvalidGroup.NotFound"]),
    "list the run's objects": ("ListObjectsV2", "", "AccessDenied", True, S3_BUSY),
    "delete the run's objects": ("DeleteObjects", "", "AccessDenied", True, S3_BUSY),
}
TRANSIENTS = [(step, code) for step, (*_, codes) in RUN_STEPS.items() for code in codes]


def leftovers(run_id=None):
    """The kpbench instances still alive, security groups, and S3 objects (of one run, or all)."""
    groups = boto3.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:project", "Values": ["kpbench"]}])["SecurityGroups"]
    prefix = f"kpbench/{run_id}/" if run_id else "kpbench/"
    objects = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("KeyCount", 0)
    return {"instances": live_instances(), "security groups": [g["GroupId"] for g in groups], "objects": objects}


NOTHING = {"instances": [], "security groups": [], "objects": 0}


def _faulty_run(monkeypatch, faults, tiny_dataset, out, **overrides):
    inject(monkeypatch, "before-send", faults)
    return run_instance(*ec2_spec(boot_timeout_s=10, limits={"stall_timeout_s": 20, "deadline_s": 60}, poll_s=0.2,
                                  **overrides), tiny_dataset, out)


@pytest.mark.parametrize("step, code", TRANSIENTS, ids=[f"{s}-{c}" for s, c in TRANSIENTS])
def test_a_transient_refusal_at_any_step_is_retried(aws_env, tiny_dataset, tmp_path, player, monkeypatch, step, code):
    op, part, *_ = RUN_STEPS[step]
    faults = Faults(**{op: (code, 2, part)})
    # The launcher must see it running first: a real instance boots longer than these retries last.
    player(fast=True, extra_env={"KPBENCH_BOOT_S": "6" if op == "DescribeInstances" else "0"})
    run = _faulty_run(monkeypatch, faults, tiny_dataset, tmp_path / "out")
    assert run["metrics"]["val_rmse_px"] == 1.0 and faults.hits == [op, op]
    assert leftovers() == NOTHING


@pytest.mark.parametrize("step", RUN_STEPS)
def test_a_refusal_at_any_step_fails_clearly_and_leaves_nothing(aws_env, tiny_dataset, tmp_path, player, monkeypatch,
                                                                capsys, step):
    """A step refused for good: the run fails with a KpbenchError that says why, and its teardown
    leaves nothing behind; where the teardown itself is refused, it names the cleanup command that
    finishes the job, and that command (once AWS allows it) does."""
    op, part, code, in_teardown, _ = RUN_STEPS[step]
    faults = Faults(**{op: (code, 10 ** 6, part)})
    player(fast=True)
    # A refused status read looks like a missing status (403, see bucket.MISSING): the boot deadline
    # ends the run, or the instance's own end does.
    says = ("no status from instance|terminated without a result" if part == bucket_keys.STATUS
            else re.escape(code))
    try:
        _faulty_run(monkeypatch, faults, tiny_dataset, tmp_path / "out")
        assert in_teardown and op != "TerminateInstances", "a refused step went unnoticed"
    except KpbenchError as error:
        assert re.search(says, str(error)), error
    assert op in faults.hits
    output = capsys.readouterr()
    for _ in range(100):  # an instance the launcher could not terminate ends itself (its shutdown)
        if not live_instances():
            break
        time.sleep(0.2)
    if in_teardown:
        run_id = re.search(r"cleanup --run-id (\S+)`", output.err).group(1)
        faults.lift()
        account.cleanup(aws_config(), run_id=run_id)
    assert leftovers() == NOTHING


def test_objects_carry_no_acl_and_the_bucket_has_acls_disabled(aws_env):
    s3 = boto3.client("s3")
    controls = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"]
    assert controls == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    bucket.put_private(s3, BUCKET, "kpbench/x/status/i-1.json", b"{}")  # refused with an ACL (the play above)
    assert s3.head_object(Bucket=BUCKET, Key="kpbench/x/status/i-1.json")["ServerSideEncryption"] == "AES256"


def test_eventual_consistency_and_throttling_are_retried(aws_env, tiny_dataset, tmp_path, player, monkeypatch):
    faults = Faults(RunInstances=("RequestLimitExceeded", 1), CreateSecurityGroup=("RequestLimitExceeded", 1),
                    AuthorizeSecurityGroupIngress=("InvalidGroup.NotFound", 2),
                    DescribeInstances=("InvalidInstanceID.NotFound", 2),
                    TerminateInstances=("InvalidInstanceID.NotFound", 2))
    inject(monkeypatch, "before-send.ec2", faults)
    player()
    run = run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")
    assert run["metrics"]["val_rmse_px"] > 0
    assert sorted(set(faults.hits)) == sorted(faults.left) and all(f[1] == 0 for f in faults.left.values())
    assert boto3.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:project", "Values": ["kpbench"]}])["SecurityGroups"] == []
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="kpbench/").get("KeyCount") == 0


def test_a_group_refused_its_rule_is_still_deleted(aws_env, tiny_dataset, tmp_path, monkeypatch):
    inject(monkeypatch, "before-send.ec2", Faults(AuthorizeSecurityGroupIngress=("UnauthorizedOperation", 99)))
    with pytest.raises(KpbenchError, match="UnauthorizedOperation"):
        run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")
    assert boto3.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:project", "Values": ["kpbench"]}])["SecurityGroups"] == []
    assert all_instances() == []


def test_a_second_signal_during_teardown_does_not_skip_termination(aws_env, tiny_dataset, tmp_path, monkeypatch,
                                                                   capsys):
    sent = []

    def first(**_):  # Ctrl-C while the launcher waits for a status
        if not sent:
            sent.append(signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    def second(**_):  # and SIGTERM just as the teardown terminates
        if len(sent) == 1:
            sent.append(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)

    inject(monkeypatch, "after-call.s3.GetObject", first)
    inject(monkeypatch, "before-call.ec2.TerminateInstances", second)
    with pytest.raises(KpbenchError, match="interrupted"):
        run_instance(*ec2_spec(), tiny_dataset, tmp_path / "out")
    assert sent == [signal.SIGINT, signal.SIGTERM]
    assert "ignored until every machine is torn down" in capsys.readouterr().err
    assert live_instances() == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_whose_exception_was_lost_still_stops_the_wait(aws_env, tiny_dataset, tmp_path):
    """Python can run a signal handler inside a finalizer and drop its KeyboardInterrupt; the stop
    must still be seen at the wait's next poll, long before the deadline."""
    lost = []

    def swallowed(**_):
        if not lost:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs here, and its exception is dropped as a finalizer's is
            except KeyboardInterrupt:
                lost.append(True)

    started = time.time()
    with pytest.MonkeyPatch.context() as monkeypatch:
        inject(monkeypatch, "after-call.s3.GetObject", swallowed)
        with pytest.raises(KpbenchError, match="interrupted"):
            run_instance(*ec2_spec(limits={"deadline_s": 120}), tiny_dataset, tmp_path / "out")
    assert lost == [True]
    assert time.time() - started < 60
    assert live_instances() == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_instance_that_never_reports_is_torn_down_at_the_boot_deadline(aws_env, tiny_dataset, tmp_path):
    started = time.time()
    with pytest.raises(KpbenchError, match=r"no status from instance\(s\) i-\w+ within 3 s of launch"):
        run_instance(*ec2_spec(boot_timeout_s=3, limits={"deadline_s": 90}), tiny_dataset, tmp_path / "out")
    assert time.time() - started < 45
    assert [i["State"]["Name"] for i in all_instances()] == ["terminated"]


def test_a_silent_instance_is_judged_by_the_age_of_its_status(aws_env, tiny_dataset, tmp_path):
    """The instance says it trains, last step 0 s ago, and then says nothing more."""
    s3, stop = boto3.client("s3"), threading.Event()

    def one_status():
        while not stop.is_set():
            for instance_id in live_instances():
                (instance,) = [i for i in all_instances() if i["InstanceId"] == instance_id]
                run_id = next(t["Value"] for t in instance["Tags"] if t["Key"] == provision.TAG_RUN)
                folder = bucket_keys.instance_folder(f"kpbench/{run_id}", "us-east-1", "123456789012", instance_id)
                s3.put_object(Bucket=BUCKET, Key=f"{folder}/{bucket_keys.STATUS}", Body=json.dumps(
                    {"phase": "training", "worker": 0, "time": time.time(), "last_step_age_s": 0}).encode())
                return
            time.sleep(0.2)

    writer = threading.Thread(target=one_status, daemon=True)
    writer.start()
    started = time.time()
    try:
        with pytest.raises(KpbenchError, match=r"no status update from instance\(s\) i-\w+ for 3 s"):
            run_instance(*ec2_spec(limits={"stall_timeout_s": 3, "deadline_s": 90}), tiny_dataset, tmp_path / "out")
    finally:
        stop.set()
        writer.join()
    assert time.time() - started < 45


def test_runs_need_no_iam_permission_after_setup(aws_env, tiny_dataset, tmp_path, monkeypatch):
    def refuse(**_):
        return _Refusal(), {"Error": {"Code": "AccessDenied", "Message": "no IAM for runs"}}

    inject(monkeypatch, "before-call.iam", refuse)
    inject(monkeypatch, "before-call.s3.CreateBucket", refuse)
    with pytest.raises(KpbenchError, match="aws.boot_timeout_s"):  # it launched: only the player is missing
        run_instance(*ec2_spec(boot_timeout_s=1), tiny_dataset, tmp_path / "out")
    assert [i["State"]["Name"] for i in all_instances()] == ["terminated"]


def test_aws_setup_is_idempotent_and_safe_to_race(aws_env, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    config = aws_config(bucket="kpbench-fresh", instance_profile="kpbench-fresh")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: account.setup(config), range(4)))
    assert len({r["instance_profile_arn"] for r in results}) == 1
    profile = boto3.client("iam").get_instance_profile(InstanceProfileName="kpbench-fresh")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["kpbench-fresh"]
    overlay = tmp_path / "aws.yaml"
    overlay.write_text(f"aws:\n  bucket: kpbench-fresh\n  instance_profile: kpbench-fresh\n"
                       f"  ami: {{ssm_parameter: {AMI_PARAMETER}}}\n")
    result = subprocess.run([sys.executable, "-m", "kpbench", "aws-setup", "--configfile", "config/config.yaml",
                             str(overlay), "--out", str(tmp_path / "setup.json")], capture_output=True, text=True,
                            cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "setup.json").read_text())["bucket"] == "kpbench-fresh"
    assert secret_free(result.stdout + result.stderr)


def test_a_run_before_setup_says_what_to_run(aws_env, tiny_dataset, tmp_path):
    with pytest.raises(KpbenchError, match="kpbench aws-setup"):
        run_instance(*ec2_spec(bucket="kpbench-never-set-up"), tiny_dataset, tmp_path / "out")
    assert all_instances() == []


def test_cleanup_removes_groups_and_prefixes_of_runs_without_instances(aws_env):
    """A launcher killed between creating its group (and uploading) and launching leaves a group and a
    prefix but no instance: cleanup removes them once the run is an hour old, and never a young one's."""
    ec2, s3 = boto3.client("ec2"), boto3.client("s3")
    vpc = provision.group_vpc(ec2)
    old, young = "gpu-20200101T000000Z-abc123", f"gpu-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-def456"
    for run in (old, young):
        provision.create_security_group(ec2, f"kpbench-{run}", run, vpc)
        bucket.put_private(s3, BUCKET, f"kpbench/{run}/input/spec.json", b"{}")
    report = account.cleanup(aws_config())
    assert report["runs"] == [old] and len(report["security_groups"]) == 1 and report["s3_objects_removed"] == 1
    left = ec2.describe_security_groups(Filters=[{"Name": "tag:project", "Values": ["kpbench"]}])["SecurityGroups"]
    assert [provision.tag(g, provision.TAG_RUN) for g in left] == [young]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="kpbench/")["Contents"]] == [
        f"kpbench/{young}/input/spec.json"]
    account.cleanup(aws_config(), run_id=young)


def test_cleanup_looks_in_every_region_it_is_given(aws_env, tmp_path):
    """Runs launched while aws.region named another region: `--region` (or `--all-regions`) finds
    their instances and groups; a cleanup that does not look there leaves them, and their run's S3
    prefix, alone."""
    s3 = boto3.client("s3")

    def leave_a_run(region, run):
        ec2 = boto3.client("ec2", region_name=region)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        tags = [{"Key": "project", "Value": "kpbench"}, {"Key": provision.TAG_RUN, "Value": run},
                {"Key": provision.TAG_EXPIRES, "Value": "2999-01-01T00:00:00Z"}]
        group = provision.create_security_group(ec2, f"kpbench-{run}", run, provision.group_vpc(ec2))
        ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, SecurityGroupIds=[group],
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        bucket.put_private(s3, BUCKET, f"kpbench/{run}/input/spec.json", b"{}")
        return ec2

    # Two hours old: past the hour after which a run with no instance in sight is an orphan, but
    # within its instances' lifetime (aws.max_lifetime_h), so they may still run where nobody looked.
    away_run = f"gpu-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(time.time() - 7200))}-abc123"
    home, away = leave_a_run("us-east-1", "gpu-20200101T000000Z-aaa111"), leave_a_run("eu-west-1", away_run)
    report = account.cleanup(aws_config(max_lifetime_h=6))
    assert report["regions"] == ["us-east-1"] and report["runs"] == ["gpu-20200101T000000Z-aaa111"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"kpbench/{away_run}/")["KeyCount"] == 1
    overlay = tmp_path / "aws.yaml"
    overlay.write_text(f"aws:\n  bucket: {BUCKET}\n")
    result = subprocess.run([sys.executable, "-m", "kpbench", "cleanup", "--configfile", "config/config.yaml",
                             str(overlay), "--region", "eu-west-1"], capture_output=True, text=True,
                            cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert "terminated 1 instance(s)" in result.stdout and "looked in eu-west-1, us-east-1" in result.stdout
    for ec2 in (home, away):
        assert ec2.describe_security_groups(Filters=[{"Name": "tag:project", "Values": ["kpbench"]}])[
            "SecurityGroups"] == []
        assert [i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]] == [
            "terminated"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="kpbench/")["KeyCount"] == 0
    assert "eu-west-1" in account.cleanup(aws_config(), all_regions=True)["regions"]


def test_cleanup_all_removes_what_setup_made_only_on_request(aws_env):
    iam, s3 = boto3.client("iam"), boto3.client("s3")
    assert "removed_setup" not in account.cleanup(aws_config())
    iam.get_instance_profile(InstanceProfileName="kpbench-instance")  # still there
    report = account.cleanup(aws_config(), everything=True)
    assert report["removed_setup"] == ["instance profile kpbench-instance", "role kpbench-instance",
                                       f"bucket {BUCKET}"]
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName="kpbench-instance")
    assert BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_the_group_goes_into_the_subnets_vpc_and_a_missing_default_vpc_is_explained(aws_env):
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    assert provision.group_vpc(ec2, subnet_id=subnet) == vpc  # not the default VPC: a group there would be refused
    group = provision.create_security_group(ec2, "kpbench-sub", "run-s", provision.group_vpc(ec2, subnet_id=subnet))
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["VpcId"] == vpc
    ec2.delete_security_group(GroupId=group)

    class NoDefaultVpc:
        def describe_vpcs(self, **_):
            return {"Vpcs": []}

    with pytest.raises(KpbenchError, match="no default VPC: set aws.subnet_id"):
        provision.group_vpc(NoDefaultVpc())


def test_the_root_volume_is_mapped_to_the_amis_own_root_device():
    class Ec2:
        def describe_images(self, ImageIds):
            return {"Images": [{"ImageId": ImageIds[0], "RootDeviceName": "/dev/xvda"}]}

    device = provision.root_device(Ec2(), "ami-1")
    params = provision.launch_params(instance_type="g5.xlarge", count=1, ami="ami-1", user_data="", group_id="sg-1",
                               profile_name="p", run_id="r", instance_name="x", max_lifetime_h=1, volume_gb=100,
                               root_device=device)
    assert params["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
