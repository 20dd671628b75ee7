"""The instance side of the EC2 backends: the user data that bootstraps an instance, and the
`remote-worker` it runs, which trains through the same `kpbench worker` as every other backend.

The launcher and the instances talk only through the run's S3 prefix:
  input/   bundle.tar.gz, dataset.npz, spec.json (launcher), cluster.json (once all IPs are known)
  status/  <instance id>.json: the instance's phase and heartbeat
  steps/   <worker index>.json: every worker's step times
  allreduce/ <worker index>.json: every worker's all-reduce sweep (clusters)
  result/  the chief's run files, then manifest.json with their checksums (written last: a result
           without a manifest, or whose files do not match it, is partial and never collected)
  logs/    <instance id>.log: the bootstrap's log, uploaded on exit
"""

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from kpbench import KpbenchError
from kpbench.aws import SSE, put_private
from kpbench.contention import DEFAULT_THRESHOLD, Sampler
from kpbench.guard import launcher_environment
from kpbench.io import read_json, write_json
from kpbench.layout import ALLREDUCE_FILE, PROGRESS_FILE, RUN_FILES, STEPS_FILE
from kpbench.train import tf_config

# The versions the project was tested with (its environment), so an instance trains with what was
# tested. numpy 2.4 and pandas 3.1 need Python 3.11 or later: the Ubuntu 24.04 Deep Learning Base AMI
# (Python 3.12), not the 22.04 one (Python 3.10); see config/aws.yaml.
WORKER_PACKAGES = ["boto3==1.44.8", "numpy==2.4.6", "pandas==3.1.1", "tf-keras==2.21.0"]
TENSORFLOW = "2.21.0"
MANIFEST = "result/manifest.json"


def user_data(bucket, prefix, region, max_lifetime_h, gpus, account=""):
    """The instance's bootstrap script: this run's settings, then the fixed body."""
    tensorflow = f"tensorflow[and-cuda]=={TENSORFLOW}" if gpus else f"tensorflow=={TENSORFLOW}"
    settings = {"KPBENCH_BUCKET": bucket, "KPBENCH_PREFIX": prefix, "AWS_DEFAULT_REGION": region,
                "KPBENCH_MAX_MINUTES": str(max(1, int(max_lifetime_h * 60))), "KPBENCH_ACCOUNT": account,
                "KPBENCH_PACKAGES": " ".join([tensorflow, *WORKER_PACKAGES])}
    header = "#!/bin/bash\n" + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items())
    return header + (Path(__file__).parent / "instance_bootstrap.sh").read_text()


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Exchange:
    """This run's S3 prefix, as the instance sees it."""

    def __init__(self, bucket, prefix):
        import boto3

        from kpbench.aws import pin_bucket_owner

        # The bucket must belong to the launcher's account (ExpectedBucketOwner on every call).
        self.s3 = pin_bucket_owner(boto3.client("s3"), os.environ.get("KPBENCH_ACCOUNT"))
        self.bucket, self.prefix = bucket, prefix

    def key(self, name):
        return f"{self.prefix}/{name}"

    def get_json(self, name):
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read())

    def put_json(self, name, obj):
        put_private(self.s3, self.bucket, self.key(name), json.dumps(obj, sort_keys=True).encode())

    def download(self, name, path):
        self.s3.download_file(self.bucket, self.key(name), str(path))

    def upload(self, path, name):
        self.s3.upload_file(str(path), self.bucket, self.key(name), ExtraArgs=SSE)

    def wait_json(self, name, timeout_s, poll_s=2.0):
        deadline = time.time() + timeout_s
        while True:
            try:
                return self.get_json(name)
            except self.s3.exceptions.ClientError as error:
                # Without s3:ListBucket on the key, S3 answers a missing key with 403, not 404
                # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax).
                if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404", "AccessDenied", "403"):
                    raise
                if time.time() > deadline:
                    raise KpbenchError(f"{name} did not appear in s3://{self.bucket}/{self.prefix} "
                                       f"within {timeout_s:.0f} s") from None
                time.sleep(poll_s)


def remote_worker(bucket, prefix, workdir):
    """Train on this instance as its row of the run says, upload the result, report each phase."""
    instance_id = os.environ["KPBENCH_INSTANCE_ID"]
    exchange, workdir = Exchange(bucket, prefix), Path(workdir)
    status_name = f"status/{instance_id}.json"
    exchange.put_json(status_name, {"phase": "bootstrapped", "time": time.time()})
    spec_path, dataset_path, out = workdir / "spec.json", workdir / "dataset.npz", workdir / "out"
    exchange.download("input/spec.json", spec_path)
    exchange.download("input/dataset.npz", dataset_path)
    spec = json.loads(spec_path.read_text())
    limits = spec.get("limits", {})
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    index = 0
    if int(spec["instance"].get("workers", 1)) > 1:
        cluster = exchange.wait_json("input/cluster.json", float(limits.get("stall_timeout_s", 600)))
        ids = [worker["instance_id"] for worker in cluster["workers"]]
        index = ids.index(instance_id)
        override = os.environ.get("KPBENCH_CLUSTER_ADDRESSES")
        addresses = override.split(",") if override else [w["address"] for w in cluster["workers"]]
        env["TF_CONFIG"] = json.dumps(tf_config(addresses, index))

    exchange.put_json(status_name, {"phase": "training", "worker": index, "time": time.time()})
    out.mkdir(parents=True, exist_ok=True)
    with open(workdir / "worker.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "kpbench", "worker", "--spec", f"@{spec_path}",
                                    "--dataset", str(dataset_path), "--out", str(out)],
                                   stdout=log, stderr=subprocess.STDOUT, env=launcher_environment(env))
    # What else used this instance while it trained; the chief's record is the run's.
    sampler = Sampler([process.pid], limits.get("max_foreign_cpu_share", DEFAULT_THRESHOLD)).start()
    try:
        stall = float(limits.get("stall_timeout_s", 600))
        # Heartbeats well inside the stall limit: the launcher also judges an instance by its status's age.
        code = _supervise(process, out / PROGRESS_FILE, exchange, status_name, index, stall,
                          heartbeat_s=min(30.0, stall / 4))
    finally:
        contention = sampler.stop()
    print((workdir / "worker.log").read_text(errors="replace"), flush=True)
    if code != 0:
        print(f"training on {instance_id} failed (exit status {code})", file=sys.stderr, flush=True)
        raise SystemExit(code if code > 0 else 1)

    exchange.put_json(status_name, {"phase": "uploading", "worker": index, "time": time.time()})
    exchange.upload(out / STEPS_FILE, f"steps/{index}.json")
    if (out / ALLREDUCE_FILE).exists():
        exchange.upload(out / ALLREDUCE_FILE, f"allreduce/{index}.json")
    if index == 0:
        run = read_json(out / "run.json")
        run["contention"] = contention
        write_json(out / "run.json", run)
        files = {name: {"sha256": sha256(out / name), "bytes": (out / name).stat().st_size} for name in RUN_FILES}
        for name in RUN_FILES:
            exchange.upload(out / name, f"result/{name}")
        exchange.put_json(MANIFEST, {"files": files, "instance_id": instance_id})
    exchange.put_json(status_name, {"phase": "done", "worker": index, "time": time.time()})


def _supervise(process, progress_path, exchange, status_name, index, stall_timeout_s, heartbeat_s=30.0):
    """Wait for the training process, sending a heartbeat; a hung one is killed after the stall limit."""
    started = time.time()
    while True:
        try:
            return process.wait(timeout=heartbeat_s)
        except subprocess.TimeoutExpired:
            pass
        last_step = progress_path.stat().st_mtime if progress_path.exists() else started
        try:
            progress = read_json(progress_path)  # the last finished epoch, for the launcher's progress line
        except (OSError, ValueError):
            progress = None
        exchange.put_json(status_name, {"phase": "training", "worker": index, "time": time.time(),
                                        "last_step_age_s": time.time() - last_step, "progress": progress})
        if time.time() - last_step > stall_timeout_s:
            process.kill()
            process.wait()
            print(f"no training step for {stall_timeout_s:.0f} s: stopped", flush=True)
            return -9
