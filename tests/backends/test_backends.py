"""The local and local-cluster backends: real worker processes, real MultiWorkerMirroredStrategy."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpbench import KpbenchError
from kpbench.backends.launch import run_instance
from kpbench.backends.local import free_ports
from kpbench.core.contention import contended
from kpbench.core.layout import PROGRESS_FILE
from kpbench.core.version import code_version
from kpbench.train.run import tf_config
from specs import run_inputs

# Runs Snakemake, whole pipelines or real clusters: left out of the fast loop (`-m "not workflow"`).
pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def cluster_dataset(tmp_path_factory, small_dataset):
    return small_dataset(tmp_path_factory.mktemp("cluster-data"), n_train=100, seed=21, validation_fraction=0.2)


def _spec(backend, workers, batch, **training):
    """(spec, launch) of a small run on this machine."""
    return run_inputs(
        {"name": f"{backend}-{workers}", "backend": backend, "workers": workers, "gpus": 0,
         "usd_per_hour": 0.1, "price_date": "2026-01-01"},
        {"name": "tiny", "epochs": 3, "batch_size": batch, "max_train_images": 64, "max_val_images": 16},
        training={"learning_rate": 1e-3, "seed": 3, "pck_radius_px": 3.0, "prediction_samples": 2,
                  "peak_matmul_size": 128, "warmup_epochs": 0, "scale_learning_rate": False, **training},
        limits={"stall_timeout_s": 60, "deadline_s": 600})


def _our_processes(marker):
    """PIDs whose command line mentions `marker` (the run's folder): orphans if any survive."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_wait_estimate_is_kept_as_measured_and_flagged_when_unresolved():
    from kpbench.train.step_times import wait_estimate

    steps = [{"step_s": [9.0, 1.0, 1.2, 1.1], "compute_step_s": [0.7, 0.6, 0.8]},
             {"step_s": [9.0, 1.0, 1.0, 1.3], "compute_step_s": [0.9, 0.9, 0.9]}]
    result = wait_estimate(steps)
    assert result["median_step_s"] == pytest.approx(1.05)  # medians 1.1 and 1.0, first step left out
    assert result["compute_step_s"] == pytest.approx(0.85)
    # Per step: 0.3, 0.5, 0.4 (worker 0) and 0.1, 0.1, 0.4 (worker 1).
    assert result["median_s"] == pytest.approx(0.35) and result["steps"] == 6 and result["resolved"]
    assert result["p10_s"] == pytest.approx(0.1) and result["p90_s"] == pytest.approx(0.45)
    # A compute estimate above the step time (a stall while it was taken) stays negative, unresolved.
    slow = [{**w, "compute_step_s": [2.0]} for w in steps]
    result = wait_estimate(slow)
    assert result["median_s"] < 0 and not result["resolved"]


def test_ports_are_fresh_and_tf_config_names_every_worker():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    config = tf_config([f"127.0.0.1:{p}" for p in ports], 2)
    assert config["cluster"]["worker"] == [f"127.0.0.1:{p}" for p in ports]
    assert config["task"] == {"type": "worker", "index": 2}


def test_two_worker_cluster_matches_one_worker_at_the_same_global_batch(cluster_dataset, tmp_path):
    single = run_instance(*_spec("local", 1, 8), cluster_dataset, tmp_path / "single")
    cluster = run_instance(*_spec("local-cluster", 2, 4), cluster_dataset, tmp_path / "cluster")
    assert cluster["cluster"]["workers"] == 2 and cluster["cluster"]["global_batch"] == 8
    assert cluster["cluster"]["per_worker_batch"] == 4
    assert len(cluster["cluster"]["median_step_s_per_worker"]) == 2
    wait = cluster["cluster"]["wait_estimate"]
    assert 0 < wait["compute_step_s"] and wait["resolved"] == (wait["median_s"] > 0)
    sweep = cluster["cluster"]["allreduce"]
    assert sweep["workers"] == 2 and sweep["sizes"][0]["bytes"] == 4096
    # The largest message is one step's gradients: the trainable weights (not batch-norm statistics) in float32.
    assert sweep["sizes"][-1]["bytes"] == 7_264_318 * 4
    assert all(row["calls"] == 2 * 20 and row["median_s"] > 0 for row in sweep["sizes"])
    largest = sweep["sizes"][-1]
    assert largest["busbw_bytes_s"] == pytest.approx(largest["algbw_bytes_s"])  # 2(n-1)/n = 1 for n = 2
    assert sweep["memcpy_bytes_s"] > 0
    # The sweep is self-profiling: timed apart, and inside neither init nor training.
    timings = cluster["timings"]
    assert timings["profiling_s"] >= sweep["sweep_s"] > 0
    assert timings["init_s"] + timings["profiling_s"] + timings["train_s"] <= timings["wall_s"] + 1e-6
    assert cluster["cost"]["usd_per_hour"] == pytest.approx(0.2)
    assert single["cluster"]["workers"] == 1
    # The collect step records which code made each run, in the run.json it leaves.
    stored = json.loads((tmp_path / "single" / "run.json").read_text())
    assert stored["code"] == single["code"] == code_version() and stored["code"]["commit"]
    assert sorted(p.name for p in (tmp_path / "cluster").iterdir()) == ["history.csv", "predictions.npz", "run.json"]
    a, b = single["metrics"]["val_rmse_px"], cluster["metrics"]["val_rmse_px"]
    assert abs(a - b) / a < 0.25, (a, b)


def test_learning_rate_is_scaled_with_the_global_batch_and_warmed_up(cluster_dataset, tmp_path):
    run = run_instance(*_spec("local-cluster", 2, 4, scale_learning_rate=True, warmup_epochs=1),
                       cluster_dataset, tmp_path / "scaled")
    assert run["cluster"]["scaled_learning_rate"] == pytest.approx(2e-3)
    assert run["cluster"]["warmup_steps"] == run["cluster"]["steps_per_epoch"] == 64 // 8


# The crash comes after the first steps, whose tracing can take longer than a short stall timeout on
# a slow machine: that case waits long enough never to be taken for a stall. The hang's timeout is
# longer than any one phase before it (the heartbeat restarts at each), so it is the hang that is caught.
@pytest.mark.parametrize("fault, stall_timeout_s, expected", [
    ("crash:1:2", 120, r"worker 1 \(exit status 3\)"),
    ("hang:1:2", 40, r"worker\(s\) [01, ]+ of 2 made no training progress for 40 s"),
])
def test_a_crashed_or_hung_worker_ends_the_run_cleanly(cluster_dataset, tmp_path, monkeypatch, fault,
                                                       stall_timeout_s, expected):
    monkeypatch.setenv("KPBENCH_INJECT_FAULT", fault)
    spec, launch = _spec("local-cluster", 2, 4)
    launch["limits"]["stall_timeout_s"] = stall_timeout_s
    out = tmp_path / "faulty"
    start = time.time()
    with pytest.raises(KpbenchError, match=expected) as raised:
        run_instance(spec, launch, cluster_dataset, out)
    assert time.time() - start < 240
    if fault.startswith("hang"):
        # The error shows where the workers were: the hung one inside the injected callback's sleep.
        assert "Where each worker was" in str(raised.value) and "in on_train_batch_end" in str(raised.value)
    assert _our_processes(str(out)) == []
    # No result and no staging folder; only the checkpoint a rerun resumes from may stay.
    assert [p.name for p in out.iterdir()] in ([], [".backup"])


def test_unknown_backend_is_refused(cluster_dataset, tmp_path):
    spec, launch = _spec("local", 1, 8)
    spec["instance"]["backend"] = "carrier-pigeon"
    with pytest.raises(KpbenchError, match="unknown backend 'carrier-pigeon'"):
        run_instance(spec, launch, cluster_dataset, tmp_path)
    assert "TF_CONFIG" not in os.environ


def test_a_run_killed_mid_epoch_resumes_and_ends_with_every_epoch(cluster_dataset, tmp_path, monkeypatch):
    inputs = _spec("local", 1, 8)  # 64 images: 8 steps an epoch, 3 epochs
    out = tmp_path / "resumed"
    monkeypatch.setenv("KPBENCH_INJECT_FAULT", "crash:0:12")  # halfway through epoch 2
    with pytest.raises(KpbenchError, match=r"worker 0 \(exit status 3\)"):
        run_instance(*inputs, cluster_dataset, out)
    assert not (out / "run.json").exists()
    assert json.loads((out / ".backup" / "epochs.json").read_text())[-1]["epoch"] == 1
    monkeypatch.delenv("KPBENCH_INJECT_FAULT")
    run = run_instance(*inputs, cluster_dataset, out)
    assert run["timings"]["resumed_from_epoch"] == 1 and run["resumed"] is True
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]
    assert len(run["timings"]["epoch_s"]) == 3
    assert not (out / ".backup").exists()


def test_a_cluster_whose_worker_is_killed_mid_epoch_resumes_on_rerun(cluster_dataset, tmp_path, monkeypatch):
    inputs = _spec("local-cluster", 2, 4)  # global batch 8: 8 steps an epoch, 3 epochs
    out = tmp_path / "cluster-resumed"
    monkeypatch.setenv("KPBENCH_INJECT_FAULT", "crash:1:12")  # worker 1 dies halfway through epoch 2
    with pytest.raises(KpbenchError, match=r"worker 1 \(exit status 3\)"):
        run_instance(*inputs, cluster_dataset, out)
    assert _our_processes(str(out)) == []
    assert json.loads((out / ".backup" / "epochs.json").read_text())[-1]["epoch"] == 1
    monkeypatch.delenv("KPBENCH_INJECT_FAULT")
    run = run_instance(*inputs, cluster_dataset, out)
    assert run["timings"]["resumed_from_epoch"] == 1 and run["cluster"]["workers"] == 2
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]
    assert not (out / ".backup").exists()


def test_a_backup_from_another_configuration_is_not_resumed(cluster_dataset, tmp_path, monkeypatch):
    out = tmp_path / "changed"
    monkeypatch.setenv("KPBENCH_INJECT_FAULT", "crash:0:12")
    with pytest.raises(KpbenchError):
        run_instance(*_spec("local", 1, 8), cluster_dataset, out)
    monkeypatch.delenv("KPBENCH_INJECT_FAULT")
    run = run_instance(*_spec("local", 1, 8, learning_rate=5e-4), cluster_dataset, out)
    assert run["timings"]["resumed_from_epoch"] == 0
    assert len(run["timings"]["epoch_s"]) == 3


def _launch(spec_and_launch, dataset, out):
    """`python -m kpbench train` as the train rule starts it, in a process group of its own."""
    spec_path, launch_path = out.parent / f"{out.name}-spec.json", out.parent / f"{out.name}-launch.json"
    for path, part in zip((spec_path, launch_path), spec_and_launch):
        path.write_text(json.dumps(part))
    return subprocess.Popen([sys.executable, "-m", "kpbench", "train", "--spec", f"@{spec_path}",
                             "--launch", str(launch_path), "--dataset", str(dataset), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(condition, launcher, timeout_s=180):
    deadline = time.time() + timeout_s
    while not condition():
        assert launcher.poll() is None, launcher.stderr.read()
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.parametrize("backend, workers, batch", [("local", 1, 8), ("local-cluster", 2, 4)])
def test_a_launcher_killed_hard_takes_every_worker_with_it(cluster_dataset, tmp_path, backend, workers, batch):
    """As when a terminal or scheduler kills Snakemake with SIGKILL: no teardown runs, yet no worker
    trains on as an orphan beside the next run, and none writes a result nobody collects."""
    inputs = _spec(backend, workers, batch)
    inputs[0]["workload"]["epochs"] = 50  # far longer than the test waits
    out = tmp_path / "killed"
    launcher = _launch(inputs, cluster_dataset, out)
    heartbeats = lambda: len(list(out.glob(f".partial-*/worker-*/{PROGRESS_FILE}"))) == workers  # noqa: E731
    _wait_for(heartbeats, launcher)
    assert len(_our_processes(str(out))) == workers + 1  # the launcher and its training workers
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    killed, survivors = time.time(), _our_processes(str(out))
    while survivors and time.time() - killed < 10:
        time.sleep(0.1)
        survivors = _our_processes(str(out))
    assert survivors == []
    assert not list(out.rglob("run.json"))


def test_a_second_launcher_for_a_run_in_progress_is_refused_with_the_holders_pid(cluster_dataset, tmp_path):
    out = tmp_path / "held"
    first = _launch(_spec("local", 1, 8), cluster_dataset, out)
    _wait_for(lambda: (out / ".lock").exists() and (out / ".lock").read_text().startswith(f"{first.pid} "), first)
    start = time.time()
    second = subprocess.run([sys.executable, "-m", "kpbench", "train", "--spec", f"@{out.parent / 'held-spec.json'}",
                             "--launch", str(out.parent / "held-launch.json"), "--dataset", str(cluster_dataset), "--out", str(out)], capture_output=True, text=True)
    assert second.returncode == 1 and time.time() - start < 30
    assert f"being trained by another launcher: process {first.pid} (" in second.stderr
    # The refused launcher touched nothing: the first trains to the end and releases its lock.
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "predictions.npz", "run.json"]


def test_a_run_beside_a_cpu_hog_is_marked_contended(cluster_dataset, tmp_path):
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        run = run_instance(*_spec("local", 1, 8), cluster_dataset, tmp_path / "hogged")
    finally:
        hog.kill()
        hog.wait()
    record = run["contention"]
    assert record["samples"] >= 5 and record["own_cpu_s"] > 0 and record["threshold"] == 0.1
    assert record["foreign_cpu_share"] > 0.1 and record["contended"] is True and contended(run)


def _busy_ticks():
    """All CPUs' busy ticks (user, nice, system, irq, softirq, steal) and all ticks, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def test_a_run_is_marked_contended_exactly_when_others_used_the_machine(cluster_dataset, tmp_path):
    """No hog: the sampler's verdict is checked against an independent account of the same run —
    the machine's busy time less what this process and its workers used (getrusage)."""
    start_busy, start_all = _busy_ticks()
    start_own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_instance(*_spec("local", 1, 8), cluster_dataset, tmp_path / "quiet")
    end_busy, end_all = _busy_ticks()
    end_own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    own = sum((b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime) for a, b in zip(start_own, end_own))
    ticks = os.sysconf("SC_CLK_TCK")
    independent = ((end_busy - start_busy) / ticks - own) / ((end_all - start_all) / ticks)
    record = run["contention"]
    assert record["samples"] >= 5 and record["contended"] == (record["foreign_cpu_share"] > 0.1)
    assert record["contended"] == contended(run) and run["resumed"] is False
    if independent < 0.05:  # a quiet machine, as CI's is
        assert not record["contended"], (independent, record)
    elif independent > 0.2:
        assert record["contended"], (independent, record)
    else:  # near the threshold the two accounts must still agree closely
        assert abs(record["foreign_cpu_share"] - independent) < 0.1, (independent, record)
