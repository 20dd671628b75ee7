"""`ec2` and `ec2-cluster`: `workers` EC2 instances of one type (one for `ec2`), one
MultiWorkerMirrored cluster when more, launched and watched from this machine.

The launcher uploads the code bundle, data, spec and limits to the run's folder in S3, launches every
instance in one idempotent call, copies the inputs into each instance's own folder (the only one its
role reaches), writes the cluster spec once all private IPs are known, watches each instance's status
while printing progress, collects the chief's checked result, and terminates every instance in
teardown, whatever happened.

A spot row recovers from interruptions as SageMaker's managed spot training and SkyPilot's managed
jobs do: its instances ship their checkpoint to S3 every epoch and stop at EC2's two-minute notice
(kpbench.backends.aws.interruption); the launcher then ends the whole set (a cluster resumes as one,
from the chief's last checkpoint), relaunches it, in another zone when one has no capacity, on demand
after `aws.spot_fallback_after` interruptions, and the new set resumes from that checkpoint. The run
records every interruption and bills every instance it held.
"""

import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kpbench import KpbenchError
from kpbench.backends.aws import api, bucket_keys, provision
from kpbench.backends.aws.bucket import Exchange, delete_prefix, sha256
from kpbench.backends.aws.bundle import code_bundle
from kpbench.backends.aws.instance import user_data
from kpbench.backends.aws.recovery import SpotRecovery
from kpbench.backends.aws.watch import Watch
from kpbench.backends.base import Backend, pause, run_label, say
from kpbench.backends.registry import register
from kpbench.core import billing
from kpbench.core.files import read_json, write_json
from kpbench.core.layout import ALLREDUCE_FILE, RUN_FILES, RUN_JSON, STEPS_FILE
from kpbench.train.step_times import merge_step_times

LOG_GRACE_S = 60.0  # how long a finished EC2 run waits for its instances' logs
# The state reason of an instance EC2 reclaimed
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_StateReason.html).
SPOT_RECLAIMED = "Server.SpotInstanceTermination"
COSTS_DIR = ".costs"  # every EC2 run's bill, <run id>.json, failed runs' too (Snakemake does not know it)


@register("ec2", cluster=False)
@register("ec2-cluster", cluster=True)
class Ec2Instances(SpotRecovery, Backend):
    """One run's instances, from launch to teardown (see the module's docstring)."""

    provider = "aws"

    def __init__(self, spec, launch, dataset, out_dir, workers):
        self.spec, self.limits, self.aws = spec, launch["limits"], launch["aws"]
        self.dataset, self.out_dir, self.workers = Path(dataset), Path(out_dir), workers
        self.instance = spec["instance"]
        self.instance_type, self.region = self.instance["instance_type"], self.aws["region"]
        self.instance_ids, self.folders, self.group_id, self.run_id, self.run, self.clients = [], {}, None, None, None, None
        self.launched = self.running_at = self.ami = self.watch = self.account = None
        self.outcome = None
        self.market = "spot" if self.instance.get("spot") else "on-demand"
        # Every instance the run held, for teardown and the bill; the interruptions it recovered from.
        self.held, self.interruptions, self.attempt = [], [], 0

    def _translated(self):
        return api.translated(self.instance_type, self.region)

    def launch(self):
        with self._translated():
            boto = api.session(self.aws)
            self.clients = {name: api.client(boto, name) for name in ("ec2", "s3", "ssm", "sts")}
            client, account = self.clients["ec2"], self.clients["sts"].get_caller_identity()["Account"]
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            self.run_id = f"{self.instance['name']}-{stamp}-{secrets.token_hex(3)}"
            self.run = Exchange(self.clients["s3"], self.aws["bucket"], bucket_keys.run_prefix(self.aws["prefix"], self.run_id))
            self._check_setup()
            self._upload_inputs()
            ami = provision.resolve_ami(self.aws, client, self.clients["ssm"])
            vpc = provision.group_vpc(client, self.aws["vpc_id"], self.aws["subnet_id"])
            # The id is kept before the group is authorised: a refusal after this still has it deleted.
            self.group_id = provision.create_security_group(client, f"kpbench-{self.run_id}", self.run_id, vpc)
            provision.authorize_peers(client, self.group_id, self.aws["worker_port"])
            self.ami, self.account, self.launched = ami, account, time.time()
            self._start(provision.zone_order(self._zones(), movable=not self.aws["subnet_id"]))

    def _start(self, zone_order, resume_from=None):
        """Launch the run's `workers` instances (one attempt), give each its inputs (and the checkpoint
        to resume from), wait until all run, and write the cluster spec."""
        client = self.clients["ec2"]
        params = provision.launch_params(
            instance_type=self.instance_type, count=self.workers, ami=self.ami, group_id=self.group_id,
            user_data=user_data(self.aws["bucket"], self.run.root, self.region, self.aws["max_lifetime_h"],
                                int(self.instance["gpus"]), self.account),
            profile_name=self.aws["instance_profile"], run_id=self.run_id, instance_name=self.instance["name"],
            max_lifetime_h=self.aws["max_lifetime_h"], subnet_id=self.aws["subnet_id"],
            spot=self.market == "spot", volume_gb=self.aws["volume_gb"],
            root_device=provision.root_device(client, self.ami), attempt=self.attempt)
        started = time.time()
        launched, _ = provision.launch_in_some_zone(client, params, zone_order)
        self.instance_ids = [i["InstanceId"] for i in sorted(launched, key=lambda i: i.get("AmiLaunchIndex", 0))]
        self.held += [{"instance_id": i, "slot": slot, "attempt": self.attempt, "market": self.market, "zone": None,
                       "usd_per_hour": None, "running_at": None, "ended_at": None}
                      for slot, i in enumerate(self.instance_ids)]
        print(f"launched {self.workers} x {self.instance_type} ({self.market}, {self.ami}): "
              f"{', '.join(self.instance_ids)}", flush=True)
        self.folders = {i: self.run.folder(bucket_keys.instance_folder(self.run.root, self.region, self.account, i))
                        for i in self.instance_ids}
        self.watch = Watch(self.spec, self.folders, self.limits, self.aws["boot_timeout_s"], started)
        for folder in self.folders.values():
            if resume_from:  # before the bundle: the bootstrap starts once the bundle is there
                folder.upload(resume_from, bucket_keys.RESUME_FROM)
            for name in bucket_keys.INPUTS:
                self.run.copy_to(folder, name)
        described = self._wait_running(client)
        if self.attempt == 0:
            self.launch_to_running_s = self.running_at - started
        for held in self.held:
            if held["instance_id"] in described:
                zone = described[held["instance_id"]].get("Placement", {}).get("AvailabilityZone")
                held.update(zone=zone, running_at=self.running_at, usd_per_hour=self._price(zone))
        if self.workers > 1:
            self._write_cluster(described)

    def _upload_inputs(self):
        print(f"run {self.run_id}: uploading code, data and spec to s3://{self.run.bucket}/{self.run.root}",
              flush=True)
        self.run.put_json(bucket_keys.SPEC, self.spec)
        self.run.put_json(bucket_keys.LAUNCH, {"limits": self.limits})
        self.run.upload(self.dataset, bucket_keys.DATASET)
        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as bundle:
            bundle.write(code_bundle())
            bundle.flush()
            self.run.upload(bundle.name, bucket_keys.BUNDLE)

    def _write_cluster(self, described):
        port = self.aws["worker_port"]
        cluster = {"workers": [{"instance_id": i, "address": f"{described[i]['PrivateIpAddress']}:{port}"}
                               for i in self.instance_ids]}
        for folder in self.folders.values():
            folder.put_json(bucket_keys.CLUSTER, cluster)
        print("cluster spec written: " + ", ".join(w["address"] for w in cluster["workers"]), flush=True)

    def _check_setup(self):
        """The bucket and instance profile come from `kpbench aws-setup` (the aws_setup rule)."""
        s3 = self.run.s3
        try:
            s3.head_bucket(Bucket=self.run.bucket)
        except s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                raise KpbenchError(f"bucket {self.run.bucket} does not exist: run `python -m kpbench aws-setup "
                                   "--configfile ...` (the aws_setup rule) first") from None
            raise

    def _wait_running(self, client):
        deadline = time.time() + float(self.aws["launch_timeout_s"])
        while True:
            described = provision.describe(client, self.instance_ids)
            states = {i: described[i]["State"]["Name"] for i in self.instance_ids}
            ended = [i for i, s in states.items() if s in ("shutting-down", "terminated", "stopping", "stopped")]
            if ended:
                # One that boots and fails fast can end between two polls: it may have run, and left a log.
                reason = described[ended[0]].get("StateReason", {}).get("Message", "no reason given")
                raise KpbenchError(f"instance {ended[0]} {states[ended[0]]} without a result before it was "
                                   f"seen running ({reason}):\n" + self.watch.log(ended[0]))
            if all(s == "running" for s in states.values()):
                self.running_at = time.time()
                print(f"all {self.workers} instance(s) running after {self.running_at - self.launched:.0f} s",
                      flush=True)
                return described
            if time.time() > deadline:
                raise KpbenchError(f"instance(s) not running within {self.aws['launch_timeout_s']:.0f} s: "
                                   + ", ".join(f"{i} {s}" for i, s in states.items()))
            pause(float(self.aws["poll_s"]))

    def wait(self):
        with self._translated():
            deadline, finished = self.launched + float(self.limits["deadline_s"]), None
            while True:
                chief = self.folders[self.instance_ids[0]]  # the current set's: a relaunch replaces it
                statuses = self.watch.statuses()
                self.watch.report(statuses)
                interrupted = [i for i in self.instance_ids if statuses.get(i, {}).get("phase") == "interrupted"]
                if interrupted:
                    self._recover(interrupted[0], statuses)
                    continue
                self.watch.judge(statuses)
                done = [i for i in self.instance_ids if statuses.get(i, {}).get("phase") == "done"]
                if len(done) == self.workers and chief.exists(bucket_keys.MANIFEST):
                    # Each instance uploads its log on the way out: wait for it (briefly), so that the
                    # run's prefix is complete when teardown prints and removes it.
                    finished = finished or time.time()
                    if all(f.exists(bucket_keys.LOG) for f in self.folders.values()) or time.time() - finished > LOG_GRACE_S:
                        return
                described = provision.describe(self.clients["ec2"], self.instance_ids)
                states = {i: d["State"]["Name"] for i, d in described.items()}
                gone = [i for i, s in states.items() if s not in ("pending", "running") and i not in done]
                reclaimed = [i for i in gone if described[i].get("StateReason", {}).get("Code") == SPOT_RECLAIMED]
                if reclaimed:  # reclaimed before its notice was seen: the checkpoint shipped last stands
                    self._recover(reclaimed[0], statuses)
                    continue
                if gone:
                    raise KpbenchError(f"instance {gone[0]} {states[gone[0]]} without a result:\n"
                                       + self.watch.log(gone[0]))
                if time.time() > deadline:
                    raise KpbenchError(f"no result within {self.limits['deadline_s']:.0f} s of launch (limits.deadline_s)")
                pause(float(self.aws["poll_s"]))

    def collect(self):
        """The chief's files, checked against its manifest, with every worker's step times."""
        with self._translated():
            chief = self.folders[self.instance_ids[0]]
            manifest = chief.get_json(bucket_keys.MANIFEST)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.out_dir))
            try:
                for name in RUN_FILES:
                    chief.download(bucket_keys.result(name), staging / name)
                    if sha256(staging / name) != manifest["files"][name]["sha256"]:
                        raise KpbenchError(f"result file {name} of run {self.run_id} does not match its "
                                           "manifest (a partial or altered upload); not collected")
                run = read_json(staging / RUN_JSON)
                if self.workers > 1:
                    merge_step_times(run, *self._per_worker(staging))
                # The instances are done (and end themselves): their termination closes the bill.
                self._end_attempt()
                bill = self._bill()
                run["remote"] = {"run_id": self.run_id, "region": self.region, "ami": self.ami,
                                 "instance_type": self.instance_type, "instance_ids": self.instance_ids,
                                 "launch_to_running_s": self.launch_to_running_s,
                                 "billed_s": bill["billed_s"], "market": self.market,
                                 "instances": bill["instances"], "interruptions": self.interruptions}
                run["cost"].update({key: bill[key] for key in ("hours", "usd", "usd_per_hour", "instance_usd_per_hour",
                                                               "extras_usd_per_hour")})
                self.outcome = "collected"
                return self.finish(run, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _per_worker(self, staging):
        """Every worker's step times, and its all-reduce sweep (None where it uploaded none)."""
        steps, sweeps = [], []
        for index, folder in enumerate(self.folders[i] for i in self.instance_ids):
            folder.download(bucket_keys.STEPS, staging / STEPS_FILE)
            steps.append(read_json(staging / STEPS_FILE))
            if not folder.exists(bucket_keys.ALLREDUCE):
                # A lost sweep is a missing measurement, not a lost run: say so, go on.
                say(f"{run_label(self.spec)}: worker {index} uploaded no all-reduce sweep")
                sweeps.append(None)
                continue
            folder.download(bucket_keys.ALLREDUCE, staging / ALLREDUCE_FILE)
            sweeps.append(read_json(staging / ALLREDUCE_FILE))
        return steps, sweeps

    def _bill(self):
        return {"run_id": self.run_id, "instance_ids": [h["instance_id"] for h in self.held],
                **billing.ec2_bill(self.held, self.aws, time.time())}

    def teardown(self):
        """Terminate every instance, then remove the run's security group and (unless kept) its S3
        prefix; each step runs even if an earlier one fails, and says what it left behind."""
        if self.clients is None:
            return
        problems = []
        every = [h["instance_id"] for h in self.held]  # a relaunch's predecessors too
        try:
            if every:
                print(f"terminating {', '.join(every)}", flush=True)
                ended = provision.terminate(self.clients["ec2"], every)
                for held in self.held:
                    held["ended_at"] = held["ended_at"] or ended
        except Exception as error:  # noqa: BLE001 - teardown must go on, and name what is left
            problems.append(f"instances {', '.join(every)} may still run ({error}); "
                            f"run `python -m kpbench cleanup --run-id {self.run_id}`")
        try:
            if self.group_id and not provision.delete_security_group(self.clients["ec2"], self.group_id):
                problems.append(f"security group {self.group_id} of run {self.run_id} left; run "
                                f"`python -m kpbench cleanup --run-id {self.run_id}`")
            for instance_id in self.instance_ids:
                print(f"--- {instance_id} log ---\n{self.watch.log(instance_id, lines=200)}", flush=True)
            if self.run_id and not self.aws["keep_s3"]:
                delete_prefix(self.run.s3, self.run.bucket, self.run.root)
        except Exception as error:  # noqa: BLE001
            problems.append(f"cleanup of run {self.run_id} incomplete ({error}); run `python -m kpbench cleanup "
                            f"--run-id {self.run_id}`")
        try:  # every run's cost is kept, a failed one's too: it was billed all the same
            if self.held:
                bill = {**self._bill(), "outcome": self.outcome or "failed", "instance": self.instance["name"],
                        "interruptions": self.interruptions}
                write_json(self.out_dir / COSTS_DIR / f"{self.run_id}.json", bill)
                print(f"run {self.run_id} cost {bill['usd'] or 0:.4f} USD ({bill['billed_s']} s billed)", flush=True)
        except Exception as error:  # noqa: BLE001
            problems.append(f"cost of run {self.run_id} not recorded ({error})")
        for problem in problems:
            print(f"WARNING: {problem}", file=sys.stderr, flush=True)
