"""Scaling analysis: measured speedup and efficiency of the cluster runs, and the α–β ring
all-reduce model fitted to each cluster's measured all-reduce sweep (kpbench.train.collective), used to
predict the speedup on faster networks.

Ring all-reduce of m bytes over N workers moves 2(N-1)/N of them through each link and pays
2(N-1) per-message latencies:  t(m, N) = 2(N-1) * alpha + 2(N-1)/N * m / beta.
One cluster's sweep over message sizes separates the two: the intercept is the latency, the slope
the bandwidth. Data-parallel training keeps the per-worker batch, so N workers process N times the
images of one in a step of compute + all-reduce: speedup(N) = N * compute / (compute + t(G, N)).
"""

import math
import statistics

import numpy as np

from kpbench.backends import registry
from kpbench.core.layout import SOURCE_ORIGINAL, SOURCE_OURS, original_instance_type
from kpbench.train.collective import gradient_bytes

PREDICTED_GBPS = (5.0, 10.0, 25.0, 100.0)  # 5: what a g4dn.xlarge guarantees


def ring_allreduce_s(workers, grad_bytes, bandwidth_bytes_s, latency_s=0.0):
    """Seconds of one ring all-reduce of `grad_bytes` across `workers`."""
    if workers <= 1:
        return 0.0
    return 2 * (workers - 1) / workers * grad_bytes / bandwidth_bytes_s + 2 * (workers - 1) * latency_s


def fit_alpha_beta(sizes, workers):
    """Latency (s) and bandwidth (bytes/s) of the ring model from one cluster's sweep, by least
    squares on the relative error (the times span orders of magnitude), with the fit's residual.

    Every honest sweep gets an answer: a negative intercept means the latency is below what the
    sweep resolves (refitted through zero, `latency_resolved` false); times that do not grow with
    the message size leave the bandwidth unresolved (None). Never an error.
    """
    points = [(float(row["bytes"]), float(row["median_s"])) for row in sizes
              if row.get("median_s") is not None and math.isfinite(row["median_s"]) and row["median_s"] > 0]
    hops = 2.0 * (workers - 1)
    result = {"workers": workers, "points": len(points), "latency_s": None, "bandwidth_bytes_s": None,
              "latency_resolved": False, "bandwidth_resolved": False, "residual_rms": None}
    if workers < 2 or len(points) < 2:
        return result
    m, t = np.array(points).T
    design = np.column_stack([np.ones_like(m), m]) / t[:, None]
    (intercept, slope), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    if intercept < 0:
        intercept, slope = 0.0, float((m / t) @ np.ones_like(t) / ((m / t) @ (m / t)))
    else:
        result["latency_resolved"] = True
    predicted = intercept + slope * m
    result["residual_rms"] = float(np.sqrt(np.mean(((predicted - t) / t) ** 2)))
    result["latency_s"] = float(intercept) / hops
    if slope > 0:
        result["bandwidth_bytes_s"] = (hops / workers) / float(slope)
        result["bandwidth_resolved"] = True
    return result


def cluster_fits(runs):
    """The fitted α–β model of every cluster run that measured a sweep, beside its physical
    reference: this machine's memory-copy bandwidth for loopback clusters, the row's network
    bandwidth for machines on a network."""
    fits = []
    for run in runs:
        sweep = (run.get("cluster") or {}).get("allreduce")
        if not sweep:
            continue
        instance = run["instance"]
        loopback = not registry.kind(instance["backend"]).rented
        gbps = instance.get("network_gbps")
        reference = (sweep.get("memcpy_bytes_s") if loopback else (gbps * 1e9 / 8 if gbps else None))
        fit = fit_alpha_beta(sweep["sizes"], int(sweep["workers"]))
        fits.append({"instance": instance["name"], "repeat": run.get("repeat", 1), "loopback": loopback,
                     "reference_kind": "memory copy" if loopback else "network",
                     "reference_bytes_s": reference, "sweep": sweep["sizes"], **fit,
                     "share_of_reference": (fit["bandwidth_bytes_s"] / reference
                                            if fit["bandwidth_bytes_s"] and reference else None)})
    return fits


def prediction_latency(fits):
    """The per-message latency the predictions use: the median fitted latency of the clusters on a
    real network if there are any, else of the loopback clusters (the distribution machinery's own
    cost); 0 when no sweep resolved one."""
    for loopback in (False, True):
        latencies = [f["latency_s"] for f in fits if f["loopback"] == loopback and f["latency_resolved"]]
        if latencies:
            return statistics.median(latencies), ("network" if not loopback else "loopback")
    return 0.0, None


def predicted_speedup(workers, compute_s, grad_bytes, bandwidth_gbps, latency_s=0.0):
    """Speedup of `workers` data-parallel workers over one, on links of `bandwidth_gbps`."""
    allreduce = ring_allreduce_s(workers, grad_bytes, bandwidth_gbps * 1e9 / 8, latency_s)
    return workers * compute_s / (compute_s + allreduce)


def reference_step_s(summary, instance):
    """Seconds per training step of the original study's single-GPU run of `instance`: its
    published training time over its epochs × steps per epoch."""
    rows = summary[(summary["source"] == SOURCE_ORIGINAL) & (summary["instance"] == instance)]
    if rows.empty or rows.iloc[0]["train_s"] is None or math.isnan(rows.iloc[0]["train_s"]):
        return None
    row = rows.iloc[0]
    steps = math.ceil(row["train_images"] / row["batch_size"]) * row["epochs"]
    return float(row["train_s"]) / steps


def measured_speedups(summary, runs):
    """Speedup and efficiency of every multi-worker instance over its one-worker baseline: ours
    against our single-worker run of the same machine type (`local` for the loopback clusters),
    the original study's against its single-machine row of the same type."""
    rows = []
    ours = {run["instance"]["name"]: run["instance"] for run in runs}
    for record in summary.to_dict("records"):
        workers = int(record["workers"] or 1)
        if workers <= 1:
            continue
        if record["source"] == SOURCE_OURS:
            instance = ours.get(record["instance"], {})
            family = registry.single_worker(instance["backend"]) if instance else None
            base = next((name for name, row in ours.items() if row["backend"] == family
                         and row.get("instance_type") == instance.get("instance_type")
                         and int(row.get("workers", 1)) == 1), None)
        else:
            base = original_instance_type(record["instance"])
        baseline = summary[(summary["source"] == record["source"]) & (summary["instance"] == base)]
        if base is None or baseline.empty:
            continue
        base_row = baseline.iloc[0]
        speedup = float(record["images_per_s"]) / float(base_row["images_per_s"])
        # With repeats, the widest range their runs allow: the slowest cluster run over the fastest baseline, and back.
        low, high = (_ratio(record.get("images_per_s_min"), base_row.get("images_per_s_max")),
                     _ratio(record.get("images_per_s_max"), base_row.get("images_per_s_min")))
        repeated = int(record.get("repeats") or 1) > 1 or int(base_row.get("repeats") or 1) > 1
        # Workers sharing one machine's cores can at best match one worker on it: their ideal is 1x.
        loopback = record["source"] == SOURCE_OURS and not registry.kind(instance["backend"]).rented
        ideal = 1 if loopback else workers
        rows.append({"source": record["source"], "instance": record["instance"], "baseline": base,
                     "workers": workers, "speedup": speedup, "ideal": ideal, "loopback": loopback,
                     "efficiency": speedup / ideal, "network_gbps": record.get("network_gbps"),
                     "speedup_low": low if repeated else None, "speedup_high": high if repeated else None})
    return rows


def _ratio(numerator, denominator):
    """numerator / denominator, or None where either is missing (None or NaN) or the denominator is 0."""
    if any(value is None or value != value for value in (numerator, denominator)) or not denominator:
        return None
    return float(numerator) / float(denominator)


def scaling_analysis(summary, runs, parameters, reference_instance, workers=(2, 4, 8)):
    """Everything the paper and the scaling figures show: measured speedups, every cluster's fitted
    model, and predicted speedups of the reference GPU at 5, 10, 25 and 100 Gbit/s."""
    grad_bytes = gradient_bytes(parameters)
    fits = cluster_fits(runs)
    latency, latency_from = prediction_latency(fits)
    compute = reference_step_s(summary, reference_instance)
    # The latencies the median came from: the predictions also at the most and the least of them.
    fitted = [f["latency_s"] for f in fits if f["latency_resolved"] and f["loopback"] == (latency_from == "loopback")]
    slowest, fastest = max(fitted or [latency]), min(fitted or [latency])
    predictions = []
    if compute:
        for gbps in PREDICTED_GBPS:
            def speedup(n, alpha, gbps=gbps):
                return predicted_speedup(n, compute, grad_bytes, gbps, alpha)

            predictions.append({"gbps": gbps, "speedups": {str(n): speedup(n, latency) for n in workers},
                                "speedup_ranges": {str(n): [speedup(n, slowest), speedup(n, fastest)] for n in workers}})
    return {"gradient_bytes": grad_bytes, "fits": fits, "latency_s": latency, "latency_from": latency_from,
            "latency_runs": len(fitted) if latency_from else 0,
            "reference_instance": reference_instance, "reference_step_s": compute, "workers": list(workers),
            "predictions": predictions, "measured": measured_speedups(summary, runs),
            "cluster_runs": sum(1 for run in runs if int((run.get("cluster") or {}).get("workers", 1)) > 1)}
