"""How an EC2 launcher recovers a spot run (kpbench.backends.aws.ec2): where it may launch, what one
machine costs in its market, and the relaunch of the whole set from the chief's last checkpoint
after an interruption (the instance's side: kpbench.backends.aws.interruption)."""

import tempfile
import time
from pathlib import Path

from kpbench.backends.aws import bucket_keys, provision
from kpbench.backends.aws.interruption import checkpoint_facts
from kpbench.backends.base import run_label, say


def _download_settled(chief, path, tries=5, pause_s=2.0):
    """The chief's checkpoint, once it has stopped changing: an upload that was under way when the set
    was terminated can still replace it, and a ranged download that straddles two versions is refused
    (PreconditionFailed, or a checksum that does not match)."""
    for attempt in range(1, tries + 1):
        try:
            return chief.download(bucket_keys.CHECKPOINT, path)
        except Exception:  # noqa: BLE001 - botocore's ClientError or s3transfer's S3DownloadFailedError
            if attempt == tries:
                raise
            time.sleep(pause_s)


class SpotRecovery:
    """The launcher's spot side; its instance (Ec2Instances) holds the run's state."""

    def _zones(self):
        return [] if self.aws["subnet_id"] else provision.zones(self.clients["ec2"])

    def _price(self, zone):
        """One machine's price per hour in its market: the catalogue's on-demand price, or the spot
        price in effect in its zone at launch (None: EC2 gave none, the bill says unknown)."""
        if self.market == "on-demand":
            price = self.instance.get("usd_per_hour")
            return None if price is None else float(price)
        return provision.spot_price(self.clients["ec2"], self.instance_type, zone)

    def _recover(self, instance_id, statuses):
        """One instance was interrupted: record it, end the whole set, and relaunch it from the chief's
        last checkpoint, away from the zone that reclaimed it (on demand once the configured number
        of interruptions is reached)."""
        now, status = time.time(), statuses.get(instance_id, {})
        chief = self.folders[self.instance_ids[0]]
        held = next(h for h in self.held if h["instance_id"] == instance_id)
        stopped = status.get("stopped_at", now)
        self._end_attempt()
        with tempfile.TemporaryDirectory() as scratch:
            resume_from, kept, since = None, 0, held["running_at"] or now
            if chief.exists(bucket_keys.CHECKPOINT):
                resume_from = Path(scratch) / bucket_keys.CHECKPOINT
                _download_settled(chief, resume_from)
                kept, since = checkpoint_facts(resume_from)
            self.interruptions.append({
                "instance_id": instance_id, "worker": held["slot"], "zone": held["zone"], "attempt": self.attempt,
                "at": stopped, "notice": status.get("notice"), "rebalance": status.get("rebalance"),
                "epochs_kept": kept, "work_lost_s": max(0.0, stopped - since)})
            say(f"{run_label(self.spec)}: {instance_id} (worker {held['slot']}, {held['zone']}) interrupted; "
                f"{kept} epoch(s) kept, {self.interruptions[-1]['work_lost_s']:.0f} s of work lost")
            fallback = int(self.aws["spot_fallback_after"])
            if self.market == "spot" and len(self.interruptions) >= fallback:
                self.market = "on-demand"
                say(f"{run_label(self.spec)}: {len(self.interruptions)} interruption(s) (aws.spot_fallback_after "
                    f"= {fallback}): relaunching on demand")
            self.attempt += 1
            self._start(provision.zone_order(self._zones(), avoid=held["zone"], movable=not self.aws["subnet_id"]),
                        resume_from)

    def _end_attempt(self):
        """Terminate the current set and close its instances' bills."""
        ended = provision.terminate(self.clients["ec2"], self.instance_ids)
        for held in self.held:
            if held["instance_id"] in self.instance_ids and held["ended_at"] is None:
                held["ended_at"] = ended
