"""The instance side of the EC2 backends: the user data that bootstraps an instance, and the
`remote-worker` it runs, which trains through the same `kpbench worker` as every other backend.

The launcher and an instance talk only through the instance's own folder in S3 (kpbench.backends.aws.bucket_keys).
"""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from kpbench import PACKAGE_ROOT
from kpbench.backends.aws import bucket_keys
from kpbench.backends.aws.bucket import Exchange, sha256
from kpbench.backends.aws.interruption import SpotGuard, restore_checkpoint, stop_for
from kpbench.backends.run_lock import launcher_environment
from kpbench.core.contention import Sampler
from kpbench.core.files import read_json, write_json
from kpbench.core.layout import ALLREDUCE_FILE, PROGRESS_FILE, RUN_FILES, RUN_JSON, STEPS_FILE
from kpbench.train.run import prepare_backup, tf_config

# The versions the project was tested with (its environment), so an instance trains with what was
# tested. numpy 2.4 and pandas 3.1 need Python 3.11 or later: the Ubuntu 24.04 Deep Learning Base AMI
# (Python 3.12), not the 22.04 one (Python 3.10); see config/aws.yaml.
WORKER_PACKAGES = ["boto3==1.44.8", "numpy==2.4.6", "pandas==3.1.1", "tf-keras==2.21.0"]
TENSORFLOW = "2.21.0"


def user_data(bucket, run_root, region, max_lifetime_h, gpus, account):
    """The instance's bootstrap script: this run's settings, then the fixed body. The bootstrap
    completes its folder's name with its instance id and names its objects as kpbench.backends.aws.bucket_keys does."""
    tensorflow = f"tensorflow[and-cuda]=={TENSORFLOW}" if gpus else f"tensorflow=={TENSORFLOW}"
    settings = {"KPBENCH_BUCKET": bucket, "AWS_DEFAULT_REGION": region,
                "KPBENCH_FOLDER": bucket_keys.instance_folder(run_root, region, account, bucket_keys.INSTANCE),
                "KPBENCH_BUNDLE_KEY": bucket_keys.BUNDLE, "KPBENCH_STATUS_KEY": bucket_keys.STATUS,
                "KPBENCH_LOG_KEY": bucket_keys.LOG,
                "KPBENCH_MAX_MINUTES": str(max(1, int(max_lifetime_h * 60))), "KPBENCH_ACCOUNT": account,
                "KPBENCH_PACKAGES": " ".join([tensorflow, *WORKER_PACKAGES])}
    header = "#!/bin/bash\n" + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items())
    return header + (PACKAGE_ROOT / "backends" / "aws" / "instance_bootstrap.sh").read_text()


def _exchange(bucket, prefix):
    """This instance's folder, every call pinned to the launcher's account (ExpectedBucketOwner)."""
    import boto3

    from kpbench.backends.aws.api import pin_bucket_owner

    return Exchange(pin_bucket_owner(boto3.client("s3"), os.environ.get("KPBENCH_ACCOUNT")), bucket, prefix)


def remote_worker(bucket, prefix, workdir):
    """Train on this instance as its run's spec and limits say, upload the result, report each phase.
    A spot row's instance resumes from the checkpoint its launcher gave it, ships its own after
    every epoch, and stops at an interruption notice (kpbench.backends.aws.interruption)."""
    instance_id = os.environ["KPBENCH_INSTANCE_ID"]
    exchange, workdir = _exchange(bucket, prefix), Path(workdir)
    exchange.put_json(bucket_keys.STATUS, {"phase": "bootstrapped", "time": time.time()})
    spec_path, dataset_path, out = workdir / "spec.json", workdir / "dataset.npz", workdir / "out"
    exchange.download(bucket_keys.SPEC, spec_path)
    exchange.download(bucket_keys.DATASET, dataset_path)
    spec, limits = read_json(spec_path), exchange.get_json(bucket_keys.LAUNCH)["limits"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    index = _join_cluster(exchange, spec, limits, instance_id, env)
    backup = workdir / "backup"
    resumed = restore_checkpoint(exchange, backup)
    prepare_backup(backup, spec)
    guard = SpotGuard(exchange, backup, index, float(limits["notice_poll_s"])) if spec["instance"].get("spot") else None
    exchange.put_json(bucket_keys.STATUS, {"phase": "training", "worker": index, "time": time.time(),
                                           "resumed_epochs": resumed})
    out.mkdir(parents=True, exist_ok=True)
    with open(workdir / "worker.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "kpbench", "worker", "--spec", f"@{spec_path}",
                                    "--dataset", str(dataset_path), "--out", str(out), "--backup-dir", str(backup)],
                                   stdout=log, stderr=subprocess.STDOUT, env=launcher_environment(env))
    # What else used this instance while it trained; the chief's record is the run's.
    sampler = Sampler([process.pid], limits["max_foreign_cpu_share"]).start()
    try:
        stall = float(limits["stall_timeout_s"])
        # Heartbeats well inside the stall limit: the launcher also judges an instance by its status's age.
        code = _supervise(process, out / PROGRESS_FILE, exchange, index, stall, heartbeat_s=min(30.0, stall / 4),
                          guard=guard)
    finally:
        contention = sampler.stop()
        if process.poll() is None:  # supervision itself failed (an S3 error): no training left behind
            process.kill()
    print((workdir / "worker.log").read_text(errors="replace"), flush=True)
    if isinstance(code, dict):  # the interruption notice: the launcher relaunches from the checkpoint
        exchange.put_json(bucket_keys.STATUS, {"phase": "interrupted", "worker": index, "time": time.time(), **code})
        print(f"spot interruption notice on {instance_id}: training stopped", flush=True)
        return
    if code != 0:
        print(f"training on {instance_id} failed (exit status {code})", file=sys.stderr, flush=True)
        raise SystemExit(code if code > 0 else 1)
    exchange.put_json(bucket_keys.STATUS, {"phase": "uploading", "worker": index, "time": time.time()})
    _upload_result(exchange, out, index, contention, instance_id)
    exchange.put_json(bucket_keys.STATUS, {"phase": "done", "worker": index, "time": time.time()})


def _join_cluster(exchange, spec, limits, instance_id, env):
    """This instance's worker index; in a cluster, TF_CONFIG (in `env`) from the launcher's cluster spec."""
    if int(spec["instance"]["workers"]) == 1:
        return 0
    cluster = exchange.wait_json(bucket_keys.CLUSTER, float(limits["stall_timeout_s"]))
    index = [worker["instance_id"] for worker in cluster["workers"]].index(instance_id)
    override = os.environ.get("KPBENCH_CLUSTER_ADDRESSES")
    addresses = override.split(",") if override else [w["address"] for w in cluster["workers"]]
    env["TF_CONFIG"] = json.dumps(tf_config(addresses, index))
    return index


def _upload_result(exchange, out, index, contention, instance_id):
    """Every worker's step times and sweep; the chief's run files, then their manifest (written last)."""
    exchange.upload(out / STEPS_FILE, bucket_keys.STEPS)
    if (out / ALLREDUCE_FILE).exists():
        exchange.upload(out / ALLREDUCE_FILE, bucket_keys.ALLREDUCE)
    if index == 0:
        run = read_json(out / RUN_JSON)
        run["contention"] = contention
        write_json(out / RUN_JSON, run)
        files = {name: {"sha256": sha256(out / name), "bytes": (out / name).stat().st_size} for name in RUN_FILES}
        for name in RUN_FILES:
            exchange.upload(out / name, bucket_keys.result(name))
        exchange.put_json(bucket_keys.MANIFEST, {"files": files, "instance_id": instance_id})


def _supervise(process, progress_path, exchange, index, stall_timeout_s, heartbeat_s=30.0, guard=None):
    """Wait for the training process, sending a heartbeat; a hung one is killed after the stall limit.
    Returns its exit status, or (spot, `guard`) what an interruption notice stopped: the notice, when
    training stopped, and the checkpoint shipped last."""
    started, beat = time.time(), 0.0
    while True:
        try:
            return process.wait(timeout=min(heartbeat_s, guard.poll_s) if guard else heartbeat_s)
        except subprocess.TimeoutExpired:
            pass
        if guard:
            guard.ship()
            notice = guard.notice()
            if notice is not None:
                stopped = stop_for(process)
                shipped = guard.ship()
                return {"notice": notice, "stopped_at": stopped, "checkpoint": shipped,
                        "rebalance": guard.rebalance}
            if time.time() - beat < heartbeat_s:
                continue
        beat = time.time()
        last_step = progress_path.stat().st_mtime if progress_path.exists() else started
        try:
            progress = read_json(progress_path)  # the last finished epoch, for the launcher's progress line
        except (OSError, ValueError):
            progress = None
        exchange.put_json(bucket_keys.STATUS, {"phase": "training", "worker": index, "time": time.time(),
                                        "last_step_age_s": time.time() - last_step, "progress": progress,
                                        "checkpoint": guard.shipped if guard else None})
        if time.time() - last_step > stall_timeout_s:
            process.kill()
            process.wait()
            print(f"no training step for {stall_timeout_s:.0f} s: stopped", flush=True)
            return -9
