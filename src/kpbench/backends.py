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
import time
from pathlib import Path

from kpbench import KpbenchError
from kpbench.io import read_json, write_json
from kpbench.train import RUN_FILES

PROGRESS_FILE = "progress.json"
BACKUP_DIR = ".backup"  # survives a failed run (Snakemake does not know it), so a rerun resumes
STEPS_FILE = "steps.json"


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


def tf_config(ports, index):
    return {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index}}


class LocalProcesses(Backend):
    """N training processes on this machine (N = 1 for `local`)."""

    def __init__(self, spec, dataset, out_dir, workers, stall_timeout_s, deadline_s):
        self.spec, self.dataset, self.out_dir = spec, Path(dataset), Path(out_dir)
        self.workers, self.stall_timeout_s, self.deadline_s = workers, stall_timeout_s, deadline_s
        self.processes = []
        self.staging = None

    def _worker_dir(self, index):
        return self.staging / f"worker-{index}"

    def launch(self):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.out_dir))
        spec_path = self.staging / "spec.json"
        write_json(spec_path, self.spec)
        ports = free_ports(self.workers) if self.workers > 1 else []
        self.launched = time.time()
        for index in range(self.workers):
            folder = self._worker_dir(index)
            folder.mkdir()
            env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
            if ports:
                env["TF_CONFIG"] = json.dumps(tf_config(ports, index))
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

    def wait(self):
        deadline = self.launched + self.deadline_s
        while True:
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
        if self.workers > 1:
            steps = [read_json(self._worker_dir(i) / STEPS_FILE) for i in range(self.workers)]
            run["cluster"]["median_step_s_per_worker"] = step_summary(steps)
            run["cluster"].update(step_breakdown(steps))
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


def step_summary(steps_per_worker):
    """Median step seconds per worker (the first step, which traces the graph, left out)."""
    import statistics

    return [statistics.median(w["step_s"][1:] or w["step_s"]) for w in steps_per_worker]


def step_breakdown(steps_per_worker):
    """Step time split into compute (each worker's own forward and backward pass, timed without
    collectives) and the rest, spent in or waiting for the all-reduce; medians over workers."""
    import statistics

    step = statistics.median(step_summary(steps_per_worker))
    compute = statistics.median(w["compute_step_s"] for w in steps_per_worker)
    wait = max(0.0, step - compute)
    return {"median_step_s": step, "compute_step_s": compute, "allreduce_wait_s": wait,
            "allreduce_share": wait / step}


BACKENDS = {"local": 1, "local-cluster": None}


def make_backend(spec, dataset, out_dir):
    instance = spec["instance"]
    name = instance["backend"]
    if name not in BACKENDS:
        raise KpbenchError(f"instance {instance['name']}: unknown backend {name!r}")
    workers = BACKENDS[name] or int(instance.get("workers", 1))
    limits = spec.get("limits", {})
    return LocalProcesses(spec, dataset, out_dir, workers,
                          stall_timeout_s=float(limits.get("stall_timeout_s", 600)),
                          deadline_s=float(limits.get("deadline_s", 24 * 3600)))


def run_instance(spec, dataset, out_dir):
    """Launch, wait and collect one instance's run; tear everything down whatever happens."""
    backend = make_backend(spec, dataset, out_dir)
    try:
        backend.launch()
        backend.wait()
        return backend.collect()
    finally:
        backend.teardown()
