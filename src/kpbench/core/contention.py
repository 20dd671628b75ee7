"""What else used the machine while a run trained: a number measured beside another load is a wrong
number that looks right, so every run records it and one past the configured share is "contended".

A background thread samples, about once a second:
- the CPU ticks of the CPUs this process may run on, from /proc/stat. Busy is user + nice + system +
  irq + softirq + steal: steal is time the hypervisor gave our vCPUs to someone else, so it counts as
  foreign; idle and iowait (waiting with nothing to run) do not; guest and guest_nice are left out
  because the kernel already counts them inside user and nice;
- the run's own CPU ticks: utime + stime + cutime + cstime (children it waited for) of each worker
  and of the launcher itself, from /proc/<pid>/stat;
- the 1-minute load average, from /proc/loadavg;
- on a machine with NVIDIA GPUs, every 10th sample, the compute processes `nvidia-smi` lists that
  are not the run's own.

Foreign CPU = busy ticks - own ticks, over the window in which every one of the run's processes was
alive (a sample taken after one exited is dropped, so no own work is ever counted as foreign); its
share is of all the ticks those CPUs had. The two clocks are kept by the kernel differently, so a
quiet machine can come out a little below zero: kept as measured, never clamped.
"""

import os
import subprocess
import threading
import time
from pathlib import Path

_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal
_GPU_EVERY = 10  # samples between nvidia-smi calls (it costs tens of milliseconds of CPU itself)


def cpu_ticks(stat_text, cpus=None):
    """(busy, total) ticks of `cpus` (indices; None for every CPU) from the text of /proc/stat."""
    busy = total = 0
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]
        busy += sum(values[i] for i in _BUSY_FIELDS)
        total += sum(values)
    return busy, total


def process_ticks(stat_text):
    """utime + stime + cutime + cstime from the text of /proc/<pid>/stat (fields 14-17 of proc(5))."""
    fields = stat_text.rsplit(")", 1)[1].split()  # the command name may hold spaces or brackets
    return sum(int(v) for v in fields[11:15])


def gpu_processes(own_pids):
    """Compute processes on this machine's NVIDIA GPUs that are not in `own_pids`, as
    [{"pid", "name", "memory_mib"}]; None where there is no nvidia-smi to ask."""
    try:
        output = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory",
                                 "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_gpu_processes(output, own_pids)


def parse_gpu_processes(csv_text, own_pids):
    """The rows of `nvidia-smi --query-compute-apps` whose PID is not the run's."""
    found = []
    for line in csv_text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit() and int(parts[0]) not in own_pids:
            memory = parts[2]
            found.append({"pid": int(parts[0]), "name": parts[1],
                          "memory_mib": int(memory) if memory.isdigit() else None})
    return found


def summarise(samples, threshold, interval_s, gpu_foreign=None):
    """The contention record of a run from its samples: dicts of `busy`, `total` and `own` ticks,
    wall-clock `time` and `load`. Fewer than two samples measure nothing: the shares are null."""
    load = max((s["load"] for s in samples if s["load"] is not None), default=None)
    record = {"samples": len(samples), "interval_s": interval_s, "threshold": threshold, "load_average_max": load,
              "gpu_foreign_processes": gpu_foreign, "foreign_cpu_share": None, "foreign_cpu_s": None,
              "own_cpu_s": None, "window_s": None, "contended": None}
    if len(samples) < 2:
        return record
    first, last = samples[0], samples[-1]
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    busy, total, own = (last[k] - first[k] for k in ("busy", "total", "own"))
    foreign = busy - own
    share = foreign / total if total > 0 else None
    record.update({"foreign_cpu_share": share, "foreign_cpu_s": foreign / ticks_per_s, "own_cpu_s": own / ticks_per_s,
                   "window_s": last["time"] - first["time"],
                   "contended": None if share is None else share > threshold or bool(gpu_foreign)})
    return record


def contended(run):
    """Whether the run's record says something else used the machine while it trained; False where it
    was not measured (older runs, EC2 runs whose supervisor could not sample)."""
    return bool((run.get("contention") or {}).get("contended"))


def _read(path):
    return Path(path).read_text()


class Sampler:
    """Samples the machine and the run's processes (`pids`, plus this process) in a thread, from
    start() until stop(), which returns the run's contention record."""

    def __init__(self, pids, threshold, interval_s=1.0):
        self.pids = [os.getpid(), *pids]  # the launcher first: it reaps workers, see _sample
        self.threshold, self.interval_s = float(threshold), interval_s
        self.cpus = os.sched_getaffinity(0)  # every worker inherits it; their CPUs are ours
        self.samples, self.gpu_foreign = [], None  # {pid: process} once nvidia-smi answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="contention-sampler", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _sample(self):
        """One sample, or None once a process of the run has gone. The launcher is read before the
        workers: a worker reaped in between is then missing (the sample dropped), never counted
        twice (in its own ticks and in the launcher's cutime)."""
        try:
            own = sum(process_ticks(_read(f"/proc/{pid}/stat")) for pid in self.pids)
            busy, total = cpu_ticks(_read("/proc/stat"), self.cpus)
        except (OSError, IndexError, ValueError):
            return None
        try:
            load = float(_read("/proc/loadavg").split()[0])
        except (OSError, IndexError, ValueError):
            load = None
        return {"busy": busy, "total": total, "own": own, "time": time.time(), "load": load}

    def _loop(self):
        count = 0
        while not self._stop.is_set():
            sample = self._sample()
            if sample is None:
                return
            self.samples.append(sample)
            if count % _GPU_EVERY == 0:
                found = gpu_processes(set(self.pids))
                if found is not None:
                    self.gpu_foreign = {**(self.gpu_foreign or {}), **{p["pid"]: p for p in found}}
            count += 1
            self._stop.wait(self.interval_s)

    def stop(self):
        self._stop.set()
        self._thread.join()
        gpu = None if self.gpu_foreign is None else [self.gpu_foreign[pid] for pid in sorted(self.gpu_foreign)]
        return summarise(self.samples, self.threshold, self.interval_s, gpu)
