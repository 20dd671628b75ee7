"""`local` runs one worker process on this machine; `local-cluster` runs N worker processes on
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
import time
from pathlib import Path

from kpbench import KpbenchError
from kpbench.backends.base import Backend, epoch_line, pause, run_label, say
from kpbench.backends.registry import register
from kpbench.backends.run_lock import launcher_environment
from kpbench.core.contention import Sampler
from kpbench.core.files import read_json, write_json
from kpbench.core.layout import ALLREDUCE_FILE, PROGRESS_FILE, RUN_JSON, STEPS_FILE
from kpbench.train import collective
from kpbench.train.run import prepare_backup, tf_config
from kpbench.train.step_times import merge_step_times

BACKUP_DIR = ".backup"  # survives a failed run (Snakemake does not know it), so a rerun resumes


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


@register("local", cluster=False)
@register("local-cluster", cluster=True)
class LocalProcesses(Backend):
    """N training processes on this machine (N = 1 for `local`)."""

    def __init__(self, spec, launch, dataset, out_dir, workers):
        self.spec, self.limits, self.dataset, self.out_dir = spec, launch["limits"], Path(dataset), Path(out_dir)
        self.workers = workers
        self.stall_timeout_s, self.deadline_s = float(self.limits["stall_timeout_s"]), float(self.limits["deadline_s"])
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
        sampler = Sampler([p.pid for p in self.processes], self.limits["max_foreign_cpu_share"]).start()
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
                # In a cluster one hung worker stalls all its peers at the next all-reduce: where
                # each running worker is tells which one hung.
                raise KpbenchError(f"worker(s) {', '.join(map(str, stalled))} of {self.workers} made no "
                                   f"training progress for {self.stall_timeout_s:.0f} s (hung, or waiting on "
                                   "a lost peer); stopped. Where each worker was:\n" + self._stacks())
            pause(0.5)

    def _stacks(self, wait_s=3.0, lines=120):
        """Each running worker's Python stack, most recent call first, as its SIGUSR1 handler writes
        it into its log (kpbench.cli.main's worker)."""
        logs = {}
        for index, process in enumerate(self.processes):
            if process.poll() is None:
                log = self._worker_dir(index) / "worker.log"
                logs[index] = log.stat().st_size if log.exists() else 0
                os.kill(process.pid, signal.SIGUSR1)
        time.sleep(wait_s)
        parts = []
        for index, offset in logs.items():
            with open(self._worker_dir(index) / "worker.log", "rb") as handle:
                handle.seek(offset)
                dump = handle.read().decode(errors="replace").splitlines()
            parts.append(f"--- worker {index}:\n" + ("\n".join(dump[:lines]) or "(no stack written)"))
        return "\n".join(parts)

    def _log_tail(self, index, lines=15):
        path = self._worker_dir(index) / "worker.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def collect(self):
        """The chief's files, with every worker's step times merged into run.json."""
        chief = self._worker_dir(0)
        run = read_json(chief / RUN_JSON)
        run["contention"] = self.contention
        if self.workers > 1:
            merge_step_times(run, *([read_json(self._worker_dir(i) / name) for i in range(self.workers)]
                                    for name in (STEPS_FILE, ALLREDUCE_FILE)))
        return self.finish(run, chief)

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

