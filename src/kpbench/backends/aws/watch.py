"""How an EC2 launcher watches its instances: their status objects, the progress lines they make,
and the verdict that ends a run early (failed, stalled, silent, mute past the boot deadline)."""

import json
import time

from kpbench import KpbenchError
from kpbench.backends.aws import bucket_keys
from kpbench.backends.base import epoch_line, run_label, say


class Watch:
    """The statuses of one run's instances, each read from its own folder (kpbench.backends.aws.bucket_keys)."""

    def __init__(self, spec, folders, limits, boot_timeout_s, launched):
        self.spec, self.folders, self.launched = spec, folders, launched
        self.stall_timeout_s, self.boot_timeout_s = float(limits["stall_timeout_s"]), float(boot_timeout_s)
        self.seen, self.phases, self.shown_epoch = {}, {}, None

    def statuses(self):
        """{instance id: its latest status}; a status's age is how long ago this launcher first saw
        its current version (its own clock: no skew with S3's), not what the instance says."""
        found, now = {}, time.time()
        for instance_id, folder in self.folders.items():
            answer = folder.get(bucket_keys.STATUS)
            if answer is None:
                continue
            seen = self.seen.get(instance_id)
            if seen is None or seen[0] != answer[0]:
                seen = self.seen[instance_id] = (answer[0], now, json.loads(answer[1]))
            found[instance_id] = {**seen[2], "status_age_s": now - seen[1]}
        return found

    def log(self, instance_id, lines=25):
        answer = self.folders[instance_id].get(bucket_keys.LOG)
        if answer is None:
            return "(no log uploaded)"
        return "\n".join(answer[1].decode(errors="replace").splitlines()[-lines:])

    def report(self, statuses):
        """One progress line per instance whose phase changed, and one per epoch of the chief."""
        for instance_id in self.folders:
            status = statuses.get(instance_id, {})
            phase = status.get("phase", "booting")
            if self.phases.get(instance_id) != phase:
                self.phases[instance_id] = phase
                say(f"{run_label(self.spec)}: [{time.time() - self.launched:6.0f} s] {instance_id}: {phase}")
            progress = status.get("progress") or {}
            if status.get("worker") == 0 and progress.get("epoch") and progress["epoch"] != self.shown_epoch:
                self.shown_epoch = progress["epoch"]
                say(epoch_line(run_label(self.spec), progress))

    def judge(self, statuses):
        """Raise when the run cannot end well: an instance failed, stopped training, fell silent, or
        never reported by the boot deadline."""
        failed = [i for i, s in statuses.items() if s.get("phase") == "failed"]
        if failed:
            raise KpbenchError(f"{len(failed)} of {len(self.folders)} instance(s) failed:\n" + "\n".join(
                f"--- {i} (exit status {statuses[i].get('exit_status')}):\n{self.log(i)}" for i in failed))
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
        mute = [i for i in self.folders if i not in statuses]
        if mute and time.time() > self.launched + self.boot_timeout_s:
            raise KpbenchError(f"no status from instance(s) {', '.join(mute)} within {self.boot_timeout_s:.0f} s "
                               "of launch (aws.boot_timeout_s): the bootstrap hung or failed before it could "
                               f"report\n{self.log(mute[0])}")
