"""A spot instance's side of an interruption: it ships its run's checkpoint to its folder after every
epoch (the archive its trainer writes, kpbench.train.callbacks.checkpoint_archive), watches the instance metadata service for the two-minute notice and the rebalance
recommendation, and on a notice stops training and says where its checkpoint stands.

AWS recommends polling the notice every 5 seconds (limits.notice_poll_s); `spot/instance-action` answers 404 until EC2
schedules the interruption, then {"action": "terminate"|"stop"|"hibernate", "time": ...}; and
`events/recommendations/rebalance` answers 404 until EC2 sees an elevated risk, then {"noticeTime": ...}
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html,
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/rebalance-recommendations.html). IMDSv2 only: a
session token from PUT /latest/api/token goes with every read
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html).
"""

import json
import os
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from kpbench.backends.aws import bucket_keys
from kpbench.train.callbacks import ARCHIVE_NAME, ARCHIVE_ROOT

# The AWS SDKs' documented override of the metadata endpoint
# (https://docs.aws.amazon.com/sdkref/latest/guide/feature-imds-client.html); tests point it at a stand-in.
ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_S = 21600


class Metadata:
    """Reads of this instance's metadata over IMDSv2; an unreachable service reads as "no notice"."""

    def __init__(self, endpoint=None, timeout_s=2.0):
        self.endpoint = (endpoint or os.environ.get(ENDPOINT_VARIABLE) or DEFAULT_ENDPOINT).rstrip("/")
        self.timeout_s, self.token = timeout_s, None

    def _token(self):
        request = urllib.request.Request(f"{self.endpoint}/latest/api/token", method="PUT",
                                         headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
            return answer.read().decode()

    def get(self, path):
        """The JSON at meta-data/`path`, or None while it is absent (404) or the service cannot be reached."""
        for _ in range(2):  # an expired token answers 401: one fresh token, one more try
            try:
                self.token = self.token or self._token()
                request = urllib.request.Request(f"{self.endpoint}/latest/meta-data/{path}",
                                                 headers={"X-aws-ec2-metadata-token": self.token})
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    return json.loads(answer.read())
            except urllib.error.HTTPError as error:
                if error.code != 401:
                    return None
                self.token = None
            except (urllib.error.URLError, OSError, ValueError):
                return None
        return None

    def interruption(self):
        return self.get("spot/instance-action")

    def rebalance(self):
        return self.get("events/recommendations/rebalance")


class SpotGuard:
    """What a spot instance's supervisor does between heartbeats (kpbench.backends.aws.instance)."""

    def __init__(self, exchange, backup_dir, worker_index, poll_s, metadata=None):
        self.exchange, self.backup_dir, self.index, self.poll_s = exchange, Path(backup_dir), worker_index, poll_s
        self.metadata = metadata or Metadata()
        self.archive = self.backup_dir.parent / ARCHIVE_NAME  # the chief's trainer replaces it every epoch
        self.shipped = None  # {"epoch", "time"} of the checkpoint last uploaded
        self.rebalance = None

    def ship(self):
        """Upload the chief's checkpoint archive when the trainer has replaced it since the last upload
        (a hard link holds the one read: the next epoch's replacement cannot tear it)."""
        if self.index != 0 or not self.archive.exists():
            return self.shipped
        held = self.archive.with_suffix(".shipping")
        held.unlink(missing_ok=True)
        os.link(self.archive, held)
        try:
            epochs, ended = checkpoint_facts(held)
            if self.shipped is None or epochs > self.shipped["epoch"]:
                self.exchange.upload(held, bucket_keys.CHECKPOINT)
                self.shipped = {"epoch": epochs, "time": ended}
        finally:
            held.unlink()
        return self.shipped

    def notice(self):
        """The interruption notice, if EC2 has scheduled one; a rebalance recommendation ships the
        checkpoint at once and is remembered (training goes on: it is a risk, not a notice)."""
        if self.rebalance is None:
            self.rebalance = self.metadata.rebalance()
            if self.rebalance is not None:
                self.ship()
        return self.metadata.interruption()


def restore_checkpoint(exchange, backup_dir):
    """Unpack the checkpoint the launcher copied into this instance's inputs; the epochs it holds (0: none)."""
    backup_dir = Path(backup_dir)
    if not exchange.exists(bucket_keys.RESUME_FROM):
        return 0
    archive = backup_dir.parent / "resume.tar"
    exchange.download(bucket_keys.RESUME_FROM, archive)
    with tarfile.open(archive) as tar:
        tar.extractall(backup_dir.parent, filter="data")
    extracted = backup_dir.parent / ARCHIVE_ROOT
    if extracted != backup_dir:
        extracted.rename(backup_dir)
    journal = backup_dir / "epochs.json"
    return len(json.loads(journal.read_text())) if journal.exists() else 0


def checkpoint_facts(archive):
    """(epochs a shipped checkpoint holds, when its last epoch ended) from its epoch journal."""
    with tarfile.open(archive) as tar:
        member = tar.getmember(f"{ARCHIVE_ROOT}/epochs.json")
        return len(json.loads(tar.extractfile(member).read())), float(member.mtime)


def stop_for(process, grace_s=30.0):
    """Stop the training process within the notice's two minutes: SIGTERM, then SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:  # it ignored SIGTERM
        process.kill()
        process.wait()
    return time.time()
