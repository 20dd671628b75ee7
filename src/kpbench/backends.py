"""Backends run one instance's training: launch, wait, collect, teardown (teardown always, in finally).

`local` runs one worker process on this machine; `local-cluster` runs N worker processes on
127.0.0.1, each with its own TF_CONFIG, training together under MultiWorkerMirroredStrategy. A worker
that crashes, or stops making progress, ends the run with a clear error and no orphan processes.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kpbench import KpbenchError
from kpbench.io import read_json, write_json
from kpbench import collective
from kpbench.contention import DEFAULT_THRESHOLD, Sampler
from kpbench.guard import RunLock, launcher_environment
from kpbench.layout import ALLREDUCE_FILE, PROGRESS_FILE, RUN_FILES, STEPS_FILE
from kpbench.train import prepare_backup, tf_config

BACKUP_DIR = ".backup"  # survives a failed run (Snakemake does not know it), so a rerun resumes
LOG_GRACE_S = 60.0  # how long a finished EC2 run waits for its instances' logs
COSTS_DIR = ".costs"  # every EC2 run's bill, <run id>.json, failed runs' too (Snakemake does not know it)


def say(line):
    """A progress line for the person watching: the train rule sends stdout to its log only and
    stderr to both the log and Snakemake's terminal."""
    print(line, file=sys.stderr, flush=True)


def epoch_line(label, progress):
    """`local r1: epoch 3/12, 75 s, validation RMSE 5.31 px` from a worker's heartbeat file."""
    rmse = progress.get("val_rmse_px")
    return (f"{label}: epoch {progress['epoch']}/{progress.get('epochs') or '?'}, {progress['elapsed_s']:.0f} s, "
            f"validation RMSE {'n/a' if rmse is None else f'{rmse:.2f} px'}")


def run_label(spec):
    return f"{spec['instance']['name']} r{spec.get('repeat', 1)}"


class Backend:
    """The interface every backend shares."""

    def launch(self):
        raise NotImplementedError

    def wait(self):
        raise NotImplementedError

    def collect(self):
        raise NotImplementedError

    def teardown(self):
        raise NotImplementedError


def free_ports(count):
    """Ports the kernel just handed out: fresh per run, since MWMS peers can linger at shutdown."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class LocalProcesses(Backend):
    """N training processes on this machine (N = 1 for `local`)."""

    def __init__(self, spec, dataset, out_dir, workers, stall_timeout_s, deadline_s):
        self.spec, self.dataset, self.out_dir = spec, Path(dataset), Path(out_dir)
        self.workers, self.stall_timeout_s, self.deadline_s = workers, stall_timeout_s, deadline_s
        self.processes = []
        self.staging = self.contention = None

    def _worker_dir(self, index):
        return self.staging / f"worker-{index}"

    def launch(self):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Staging folders of a launcher killed before its teardown: the run lock says none is in use.
        for stale in self.out_dir.glob(".partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.out_dir))
        spec_path = self.staging / "spec.json"
        write_json(spec_path, self.spec)
        prepare_backup(self.out_dir / BACKUP_DIR, self.spec)
        ports = free_ports(self.workers) if self.workers > 1 else []
        self.launched = time.time()
        for index in range(self.workers):
            folder = self._worker_dir(index)
            folder.mkdir()
            env = launcher_environment({k: v for k, v in os.environ.items() if k != "TF_CONFIG"})
            if ports:
                env["TF_CONFIG"] = json.dumps(tf_config([f"127.0.0.1:{port}" for port in ports], index))
            log = open(folder / "worker.log", "w")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "kpbench", "worker", "--spec", f"@{spec_path}",
                 "--dataset", str(self.dataset), "--out", str(folder),
                 "--backup-dir", str(self.out_dir / BACKUP_DIR)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            log.close()

    def _last_progress(self, index):
        """When worker `index` last finished a training step (its heartbeat), else its launch."""
        path = self._worker_dir(index) / PROGRESS_FILE
        return path.stat().st_mtime if path.exists() else self.launched

    def _report(self, shown):
        """Print the chief's new epoch and its all-reduce sweep once each; returns what was shown."""
        chief = self._worker_dir(0)
        try:
            progress = read_json(chief / PROGRESS_FILE)
        except (OSError, ValueError):  # not written yet: a bare heartbeat, or none
            progress = {}
        if progress.get("epoch") and progress["epoch"] != shown.get("epoch"):
            say(epoch_line(run_label(self.spec), progress))
            shown["epoch"] = progress["epoch"]
        if self.workers > 1 and not shown.get("sweep") and (chief / ALLREDUCE_FILE).exists():
            sweep = collective.summarise([read_json(chief / ALLREDUCE_FILE)], self.workers)
            say(f"{run_label(self.spec)}: {collective.summary_line(sweep)} (worker 0)")
            shown["sweep"] = True
        return shown

    def wait(self):
        """Watch the workers until all finish, sampling what else uses the machine meanwhile."""
        threshold = self.spec.get("limits", {}).get("max_foreign_cpu_share", DEFAULT_THRESHOLD)
        sampler = Sampler([p.pid for p in self.processes], threshold).start()
        try:
            self._watch()
        finally:
            self.contention = sampler.stop()

    def _watch(self):
        deadline, shown = self.launched + self.deadline_s, {}
        while True:
            shown = self._report(shown)
            codes = [p.poll() for p in self.processes]
            failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                # Peers of a crashed worker fail too ("collective ops aborted"); the root cause is
                # usually in the log of the worker whose failure is not about its peers.
                time.sleep(1.0)
                failed = [i for i, p in enumerate(self.processes) if p.poll() not in (None, 0)]
                raise KpbenchError(f"{len(failed)} of {self.workers} worker(s) failed:\n" + "\n".join(
                    f"--- worker {i} (exit status {self.processes[i].returncode}):\n{self._log_tail(i)}"
                    for i in failed))
            if all(code == 0 for code in codes):
                return
            now = time.time()
            if now > deadline:
                raise KpbenchError(f"training did not finish within {self.deadline_s:.0f} s")
            stalled = [i for i, code in enumerate(codes)
                       if code is None and now - self._last_progress(i) > self.stall_timeout_s]
            if stalled:
                # In a cluster one hung worker stalls all its peers at the next all-reduce.
                raise KpbenchError(f"worker(s) {', '.join(map(str, stalled))} of {self.workers} made no "
                                   f"training progress for {self.stall_timeout_s:.0f} s (hung, or waiting on "
                                   "a lost peer); stopped")
            time.sleep(0.5)

    def _log_tail(self, index, lines=15):
        path = self._worker_dir(index) / "worker.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def collect(self):
        """The chief's files, with every worker's step times merged into run.json."""
        chief = self._worker_dir(0)
        run = read_json(chief / "run.json")
        run["contention"] = self.contention
        if self.workers > 1:
            merge_step_times(run, *([read_json(self._worker_dir(i) / name) for i in range(self.workers)]
                                    for name in (STEPS_FILE, ALLREDUCE_FILE)))
        write_json(chief / "run.json", run)
        for name in RUN_FILES:
            (chief / name).replace(self.out_dir / name)
        return run

    def teardown(self):
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.staging is not None:
            # The workers' own logs end up in this process's output: the rule's log file.
            for index in range(len(self.processes)):
                log = self._worker_dir(index) / "worker.log"
                if log.exists():
                    print(f"--- worker {index} log ---\n{log.read_text(errors='replace')}", flush=True)
            shutil.rmtree(self.staging, ignore_errors=True)


def merge_step_times(run, steps_per_worker, sweeps_per_worker):
    """Every worker's step times and all-reduce sweep into the chief's run.json (the sweep as None
    when a worker's is missing: the analysis then says it was not measured)."""
    workers = len(steps_per_worker)
    run["cluster"]["median_step_s_per_worker"] = step_summary(steps_per_worker)
    run["cluster"]["wait_estimate"] = wait_estimate(steps_per_worker)
    complete = all(sweep is not None for sweep in sweeps_per_worker)
    run["cluster"]["allreduce"] = collective.summarise(sweeps_per_worker, workers) if complete else None


def step_summary(steps_per_worker):
    """Median step seconds per worker (the first step, which traces the graph, left out)."""
    import statistics

    return [statistics.median(w["step_s"][1:] or w["step_s"]) for w in steps_per_worker]


def wait_estimate(steps_per_worker):
    """The all-reduce wait estimated per step: every worker's steady steps less its own median
    compute-only step (timed without collectives), as a median with its 10th–90th percentile spread.

    A second estimate beside the measured sweep. It is kept as measured: at or below zero it says the
    wait is below what this machine's noise can resolve (`resolved` false), never a clamped zero.
    """
    import numpy as np

    excess = np.concatenate([np.asarray(w["step_s"][1:] or w["step_s"]) - np.median(w["compute_step_s"])
                             for w in steps_per_worker])
    compute = float(np.median(np.concatenate([w["compute_step_s"] for w in steps_per_worker])))
    step = float(np.median(step_summary(steps_per_worker)))
    median = float(np.median(excess))
    return {"median_step_s": step, "compute_step_s": compute, "median_s": median,
            "p10_s": float(np.percentile(excess, 10)), "p90_s": float(np.percentile(excess, 90)),
            "steps": int(excess.size), "resolved": median > 0, "share_of_step": median / step if step > 0 else None}


class Ec2Instances(Backend):
    """`workers` EC2 instances of one type (one for `ec2`), one MultiWorkerMirrored cluster when more.

    The launcher uploads the code bundle, data and run spec to S3, launches every instance in one
    idempotent call, writes the cluster spec once all private IPs are known, polls each instance's
    status while printing progress, collects the chief's checked result, and terminates every
    instance in teardown, whatever happened.
    """

    def __init__(self, spec, dataset, out_dir, workers, aws_config, stall_timeout_s, deadline_s):
        self.spec, self.dataset, self.out_dir = spec, Path(dataset), Path(out_dir)
        self.workers, self.aws, self.stall_timeout_s, self.deadline_s = workers, aws_config, stall_timeout_s, deadline_s
        self.instance = spec["instance"]
        self.instance_type, self.region = self.instance["instance_type"], aws_config.get("region")
        self.instance_ids, self.group_id, self.run_id, self.prefix, self.clients = [], None, None, None, None
        self.launched = self.running_at = self.ami = None
        self.phases, self.status_seen, self.shown_epoch = {}, {}, None
        self.boot_timeout_s = float(aws_config.get("boot_timeout_s", 1800))
        self.terminated_at = self.outcome = None

    def _translated(self):
        from kpbench.aws import translated

        return translated(self.instance_type, self.region)

    def launch(self):
        import secrets

        from kpbench import aws
        from kpbench.remote import user_data

        with self._translated():
            boto = aws.session(self.aws)
            self.clients = {name: aws.client(boto, name) for name in ("ec2", "s3", "ssm")}
            ec2, s3 = self.clients["ec2"], self.clients["s3"]
            bucket = self.aws["bucket"]
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            self.run_id = f"{self.instance['name']}-{stamp}-{secrets.token_hex(3)}"
            self.prefix = f"{self.aws['prefix']}/{self.run_id}"
            self._check_setup(s3, bucket)
            print(f"run {self.run_id}: uploading code, data and spec to s3://{bucket}/{self.prefix}/input",
                  flush=True)
            aws.put_private(s3, bucket, f"{self.prefix}/input/bundle.tar.gz", aws.code_bundle())
            s3.upload_file(str(self.dataset), bucket, f"{self.prefix}/input/dataset.npz", ExtraArgs=aws.SSE)
            aws.put_private(s3, bucket, f"{self.prefix}/input/spec.json",
                            json.dumps(self.spec, sort_keys=True).encode())
            ami = aws.resolve_ami(self.aws, ec2, self.clients["ssm"])
            vpc = aws.group_vpc(ec2, self.aws.get("vpc_id"), self.aws.get("subnet_id"))
            # The id is kept before the group is authorised: a refusal after this still has it deleted.
            self.group_id = aws.create_security_group(ec2, f"kpbench-{self.run_id}", self.run_id, vpc)
            aws.authorize_peers(ec2, self.group_id, self.aws["worker_port"])
            params = aws.launch_params(
                instance_type=self.instance_type, count=self.workers, ami=ami, group_id=self.group_id,
                user_data=user_data(bucket, self.prefix, self.region, self.aws["max_lifetime_h"],
                                    int(self.instance.get("gpus") or 0),
                                    boto.client("sts").get_caller_identity()["Account"]),
                profile_name=self.aws["instance_profile"], run_id=self.run_id, instance_name=self.instance["name"],
                max_lifetime_h=self.aws["max_lifetime_h"], subnet_id=self.aws.get("subnet_id"),
                spot=bool(self.instance.get("spot")), volume_gb=self.aws.get("volume_gb"),
                root_device=aws.root_device(ec2, ami))
            self.launched, self.ami = time.time(), ami
            launched = aws.run_instances(ec2, params)
            self.instance_ids = [i["InstanceId"] for i in sorted(launched, key=lambda i: i.get("AmiLaunchIndex", 0))]
            print(f"launched {self.workers} x {self.instance_type} ({ami}): {', '.join(self.instance_ids)}",
                  flush=True)
            described = self._wait_running(ec2)
            if self.workers > 1:
                port = self.aws["worker_port"]
                cluster = {"workers": [{"instance_id": i, "address": f"{described[i]['PrivateIpAddress']}:{port}"}
                                       for i in self.instance_ids]}
                aws.put_private(s3, bucket, f"{self.prefix}/input/cluster.json",
                                json.dumps(cluster, sort_keys=True).encode())
                print("cluster spec written: " + ", ".join(w["address"] for w in cluster["workers"]), flush=True)

    def _check_setup(self, s3, bucket):
        """The bucket and instance profile come from `kpbench aws-setup` (the aws_setup rule)."""
        try:
            s3.head_bucket(Bucket=bucket)
        except s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                raise KpbenchError(f"bucket {bucket} does not exist: run `python -m kpbench aws-setup "
                                   "--configfile ...` (the aws_setup rule) first") from None
            raise

    def _wait_running(self, ec2):
        from kpbench.aws import describe

        deadline = time.time() + float(self.aws["launch_timeout_s"])
        while True:
            described = describe(ec2, self.instance_ids)
            states = {i: described[i]["State"]["Name"] for i in self.instance_ids}
            ended = [i for i, s in states.items() if s in ("shutting-down", "terminated", "stopping", "stopped")]
            if ended:
                reason = described[ended[0]].get("StateReason", {}).get("Message", "no reason given")
                raise KpbenchError(f"instance {ended[0]} ended before it ran ({states[ended[0]]}: {reason})")
            if all(s == "running" for s in states.values()):
                self.running_at = time.time()
                print(f"all {self.workers} instance(s) running after {self.running_at - self.launched:.0f} s",
                      flush=True)
                return described
            if time.time() > deadline:
                raise KpbenchError(f"instance(s) not running within {self.aws['launch_timeout_s']:.0f} s: "
                                   + ", ".join(f"{i} {s}" for i, s in states.items()))
            time.sleep(float(self.aws["poll_s"]))

    def _statuses(self):
        """{instance id: its latest status}; a status object's age is how long ago this launcher
        first saw its current version (its own clock: no skew with S3's), not what the instance says."""
        s3, bucket = self.clients["s3"], self.aws["bucket"]
        found, now = {}, time.time()
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{self.prefix}/status/")
        for item in (item for page in pages for item in page.get("Contents", [])):
            instance_id = Path(item["Key"]).stem
            seen = self.status_seen.get(instance_id)
            if seen is None or seen[0] != item["ETag"]:
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                seen = self.status_seen[instance_id] = (item["ETag"], now, json.loads(body))
            found[instance_id] = {**seen[2], "status_age_s": now - seen[1]}
        return found

    def _exists(self, name):
        s3 = self.clients["s3"]
        try:
            s3.head_object(Bucket=self.aws["bucket"], Key=f"{self.prefix}/{name}")
            return True
        except s3.exceptions.ClientError:
            return False

    def _instance_log(self, instance_id, lines=25):
        s3 = self.clients["s3"]
        try:
            text = s3.get_object(Bucket=self.aws["bucket"], Key=f"{self.prefix}/logs/{instance_id}.log")["Body"]
            text = text.read().decode(errors="replace")
        except s3.exceptions.ClientError:
            return "(no log uploaded)"
        return "\n".join(text.splitlines()[-lines:])

    def wait(self):
        from kpbench.aws import describe

        with self._translated():
            deadline, finished = self.launched + self.deadline_s, None
            while True:
                statuses = self._statuses()
                self._report(statuses)
                failed = [i for i, s in statuses.items() if s.get("phase") == "failed"]
                if failed:
                    raise KpbenchError(f"{len(failed)} of {self.workers} instance(s) failed:\n" + "\n".join(
                        f"--- {i} (exit status {statuses[i].get('exit_status')}):\n{self._instance_log(i)}"
                        for i in failed))
                stalled = [i for i, s in statuses.items() if s.get("last_step_age_s", 0) > self.stall_timeout_s]
                if stalled:
                    raise KpbenchError(f"instance(s) {', '.join(stalled)} made no training progress for "
                                       f"{self.stall_timeout_s:.0f} s; stopped")
                # An instance that stopped writing (hung, lost its network) says nothing: its status ages.
                silent = [i for i, s in statuses.items()
                          if s.get("phase") not in ("done", "failed") and s["status_age_s"] > self.stall_timeout_s]
                if silent:
                    raise KpbenchError(f"no status update from instance(s) {', '.join(silent)} for "
                                       f"{self.stall_timeout_s:.0f} s (limits.stall_timeout_s); stopped")
                if time.time() > self.launched + self.boot_timeout_s:
                    mute = [i for i in self.instance_ids if i not in statuses]
                    if mute:
                        raise KpbenchError(f"no status from instance(s) {', '.join(mute)} within "
                                           f"{self.boot_timeout_s:.0f} s of launch (aws.boot_timeout_s): the "
                                           "bootstrap hung or failed before it could report\n"
                                           + self._instance_log(mute[0]))
                done = [i for i in self.instance_ids if statuses.get(i, {}).get("phase") == "done"]
                if len(done) == self.workers and self._exists("result/manifest.json"):
                    # Each instance uploads its log on the way out: wait for it (briefly), so that the
                    # run's prefix is complete when teardown prints and removes it.
                    finished = finished or time.time()
                    logs = [self._exists(f"logs/{i}.log") for i in self.instance_ids]
                    if all(logs) or time.time() - finished > LOG_GRACE_S:
                        return
                states = {i: d["State"]["Name"] for i, d in describe(self.clients["ec2"], self.instance_ids).items()}
                gone = [i for i, s in states.items() if s not in ("pending", "running") and i not in done]
                if gone:
                    raise KpbenchError(f"instance {gone[0]} {states[gone[0]]} without a result:\n"
                                       + self._instance_log(gone[0]))
                if time.time() > deadline:
                    raise KpbenchError(f"no result within {self.deadline_s:.0f} s of launch (limits.deadline_s)")
                time.sleep(float(self.aws["poll_s"]))

    def _report(self, statuses):
        """One progress line per instance whose phase changed, and one per epoch of the chief."""
        for instance_id in self.instance_ids:
            status = statuses.get(instance_id, {})
            phase = status.get("phase", "booting")
            if self.phases.get(instance_id) != phase:
                self.phases[instance_id] = phase
                say(f"{run_label(self.spec)}: [{time.time() - self.launched:6.0f} s] {instance_id}: {phase}")
            progress = status.get("progress") or {}
            if status.get("worker") == 0 and progress.get("epoch") and progress["epoch"] != self.shown_epoch:
                self.shown_epoch = progress["epoch"]
                say(epoch_line(run_label(self.spec), progress))

    def collect(self):
        """The chief's files, checked against its manifest, with every worker's step times."""
        from kpbench import aws
        from kpbench.remote import MANIFEST, sha256

        with self._translated():
            s3, bucket = self.clients["s3"], self.aws["bucket"]
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{self.prefix}/{MANIFEST}")["Body"].read())
            self.out_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.out_dir))
            try:
                for name in RUN_FILES:
                    s3.download_file(bucket, f"{self.prefix}/result/{name}", str(staging / name))
                    if sha256(staging / name) != manifest["files"][name]["sha256"]:
                        raise KpbenchError(f"result file {name} of run {self.run_id} does not match its "
                                           "manifest (a partial or altered upload); not collected")
                run = read_json(staging / "run.json")
                if self.workers > 1:
                    per_worker = {}
                    for folder, name in (("steps", STEPS_FILE), ("allreduce", ALLREDUCE_FILE)):
                        for index in range(self.workers):
                            key = f"{self.prefix}/{folder}/{index}.json"
                            if name == ALLREDUCE_FILE and not self._exists(f"{folder}/{index}.json"):
                                # A lost sweep is a missing measurement, not a lost run: say so, go on.
                                say(f"{run_label(self.spec)}: worker {index} uploaded no all-reduce sweep")
                                per_worker.setdefault(name, []).append(None)
                                continue
                            s3.download_file(bucket, key, str(staging / name))
                            per_worker.setdefault(name, []).append(read_json(staging / name))
                    merge_step_times(run, per_worker[STEPS_FILE], per_worker[ALLREDUCE_FILE])
                # The instances are done (and end themselves): their termination closes the bill.
                self.terminated_at = aws.terminate(self.clients["ec2"], self.instance_ids)
                bill = self._bill()
                run["remote"] = {"run_id": self.run_id, "region": self.region, "ami": self.ami,
                                 "instance_type": self.instance_type, "instance_ids": self.instance_ids,
                                 "launch_to_running_s": self.running_at - self.launched,
                                 "billed_s": bill["billed_s"]}
                run["cost"].update({"hours": bill["hours"], "usd": bill["usd"], "usd_per_hour": bill["usd_per_hour"],
                                    "instance_usd_per_hour": bill["instance_usd_per_hour"],
                                    "extras_usd_per_hour": bill["extras_usd_per_hour"]})
                write_json(staging / "run.json", run)
                for name in RUN_FILES:
                    (staging / name).replace(self.out_dir / name)
                self.outcome = "collected"
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return run

    def _bill(self):
        """What the run cost: EC2 bills each instance per second from "running" to its termination,
        with a 60 s minimum; its gp3 volume and public IPv4 address for as long
        (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html#instance-billing)."""
        from kpbench import costs

        if self.running_at is None:  # never ran: nothing billed for the instance hours
            seconds = 0
        else:
            seconds = costs.billed_seconds((self.terminated_at or time.time()) - self.running_at)
        per_hour = costs.ec2_usd_per_hour(self.instance, self.aws)
        instance = costs.cluster_usd_per_hour(self.instance)
        return {"run_id": self.run_id, "instance_ids": self.instance_ids, "billed_s": seconds,
                "hours": seconds / costs.SECONDS_PER_HOUR, "usd_per_hour": per_hour,
                "instance_usd_per_hour": instance,
                "extras_usd_per_hour": None if per_hour is None else per_hour - instance,
                "usd": costs.run_cost_usd(seconds, per_hour), "prices": self.aws.get("prices")}

    def teardown(self):
        """Terminate every instance, then remove the run's security group and (unless kept) its S3
        prefix; each step runs even if an earlier one fails, and says what it left behind."""
        from kpbench import aws

        if self.clients is None:
            return
        ec2, s3 = self.clients["ec2"], self.clients["s3"]
        problems = []
        try:
            if self.instance_ids:
                print(f"terminating {', '.join(self.instance_ids)}", flush=True)
                self.terminated_at = aws.terminate(ec2, self.instance_ids)
        except Exception as error:  # noqa: BLE001 - teardown must go on, and name what is left
            problems.append(f"instances {', '.join(self.instance_ids)} may still run ({error}); "
                            f"run `python -m kpbench cleanup --run-id {self.run_id}`")
        try:
            if self.group_id:
                aws.delete_security_group(ec2, self.group_id)
            for instance_id in self.instance_ids:
                print(f"--- {instance_id} log ---\n{self._instance_log(instance_id, lines=200)}", flush=True)
            if self.run_id and not self.aws.get("keep_s3"):
                aws.delete_prefix(s3, self.aws["bucket"], self.prefix)
        except Exception as error:  # noqa: BLE001
            problems.append(f"cleanup of run {self.run_id} incomplete ({error}); run `python -m kpbench cleanup "
                            f"--run-id {self.run_id}`")
        try:  # every run's cost is kept, a failed one's too: it was billed all the same
            if self.instance_ids:
                bill = {**self._bill(), "outcome": self.outcome or "failed", "instance": self.instance["name"]}
                write_json(self.out_dir / COSTS_DIR / f"{self.run_id}.json", bill)
                print(f"run {self.run_id} cost {bill['usd'] or 0:.4f} USD ({bill['billed_s']} s billed)", flush=True)
        except Exception as error:  # noqa: BLE001
            problems.append(f"cost of run {self.run_id} not recorded ({error})")
        for problem in problems:
            print(f"WARNING: {problem}", file=sys.stderr, flush=True)


REMOTE_BACKENDS = ("ec2", "ec2-cluster")


def make_backend(spec, dataset, out_dir):
    instance = spec["instance"]
    name = instance["backend"]
    limits = spec.get("limits", {})
    stall, deadline = float(limits.get("stall_timeout_s", 600)), float(limits.get("deadline_s", 24 * 3600))
    single = name in ("local", "ec2")
    workers = 1 if single else int(instance.get("workers", 1))
    if name in ("local", "local-cluster"):
        return LocalProcesses(spec, dataset, out_dir, workers, stall_timeout_s=stall, deadline_s=deadline)
    if name in REMOTE_BACKENDS:
        if "aws" not in spec:
            raise KpbenchError(f"instance {instance['name']}: backend {name} needs the config's aws section")
        return Ec2Instances(spec, dataset, out_dir, workers, spec["aws"], stall_timeout_s=stall, deadline_s=deadline)
    raise KpbenchError(f"instance {instance['name']}: unknown backend {name!r}")


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _during_teardown(signum, frame):
    say(f"signal {signum} during teardown: ignored until every machine is torn down")


def run_instance(spec, dataset, out_dir):
    """Launch, wait and collect one instance's run; tear everything down whatever happens, also when
    Snakemake or the user stops the job (SIGTERM and Ctrl-C both reach the teardown, and a second
    one during the teardown cannot cut it short)."""
    backend = make_backend(spec, dataset, out_dir)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with RunLock(out_dir):  # one launcher per run folder: its checkpoint has one writer
            try:
                backend.launch()
                backend.wait()
                return backend.collect()
            finally:
                if in_main_thread:
                    for signum in previous:
                        signal.signal(signum, _during_teardown)
                backend.teardown()
    except KeyboardInterrupt:
        raise KpbenchError("interrupted; every launched machine was torn down") from None
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(signum, handler)
