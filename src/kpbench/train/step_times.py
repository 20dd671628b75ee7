"""Every worker's step times of a cluster run, merged into the chief's run.json by the launcher."""

from kpbench.train import collective


def merge_step_times(run, steps_per_worker, sweeps_per_worker):
    """Every worker's step times and all-reduce sweep into the chief's run.json (the sweep as None
    when a worker's is missing: the analysis then says it was not measured)."""
    workers = len(steps_per_worker)
    run["cluster"]["median_step_s_per_worker"] = step_summary(steps_per_worker)
    run["cluster"]["wait_estimate"] = wait_estimate(steps_per_worker)
    complete = all(sweep is not None for sweep in sweeps_per_worker)
    run["cluster"]["allreduce"] = collective.summarise(sweeps_per_worker, workers) if complete else None


def step_summary(steps_per_worker):
    """Median step seconds per worker (the first step, which traces the graph, left out); None for a
    worker that made no step (a run resumed after its last epoch's checkpoint)."""
    import statistics

    return [statistics.median(w["step_s"][1:] or w["step_s"]) if w["step_s"] else None for w in steps_per_worker]


def wait_estimate(steps_per_worker):
    """The all-reduce wait estimated per step: every worker's steady steps less its own median
    compute-only step (timed without collectives), as a median with its 10th–90th percentile spread.

    A second estimate beside the measured sweep. It is kept as measured: at or below zero it says the
    wait is below what this machine's noise can resolve (`resolved` false), never a clamped zero.
    """
    import numpy as np

    if not all(w["step_s"] for w in steps_per_worker):
        return None  # a worker made no step: nothing to estimate the wait from
    excess = np.concatenate([np.asarray(w["step_s"][1:] or w["step_s"]) - np.median(w["compute_step_s"])
                             for w in steps_per_worker])
    compute = float(np.median(np.concatenate([w["compute_step_s"] for w in steps_per_worker])))
    step = float(np.median(step_summary(steps_per_worker)))
    median = float(np.median(excess))
    return {"median_step_s": step, "compute_step_s": compute, "median_s": median,
            "p10_s": float(np.percentile(excess, 10)), "p90_s": float(np.percentile(excess, 90)),
            "steps": int(excess.size), "resolved": median > 0, "share_of_step": median / step if step > 0 else None}

