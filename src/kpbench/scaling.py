"""Scaling analysis: measured speedup and efficiency of the cluster runs, and a ring all-reduce
model fitted to the measured all-reduce time that predicts the speedup on faster networks.

Ring all-reduce over N workers moves 2(N-1)/N of the gradient bytes through each link and pays
2(N-1) per-message latencies:  t(N) = 2(N-1)/N * G / B + 2(N-1) * alpha.
Data-parallel training keeps the per-worker batch, so N workers process N times the images of one
in a step of compute + all-reduce: speedup(N) = N * compute / (compute + t(N)).
"""

import math

import numpy as np

from kpbench import KpbenchError

BYTES_PER_GRADIENT = 4  # float32 gradients, whatever the compute precision
PREDICTED_GBPS = (5.0, 10.0, 25.0, 100.0)  # 5: what a g4dn.xlarge guarantees


def gradient_bytes(parameters):
    return int(parameters) * BYTES_PER_GRADIENT


def ring_allreduce_s(workers, grad_bytes, bandwidth_bytes_s, latency_s=0.0):
    """Seconds of one ring all-reduce of `grad_bytes` across `workers`."""
    if workers <= 1:
        return 0.0
    return 2 * (workers - 1) / workers * grad_bytes / bandwidth_bytes_s + 2 * (workers - 1) * latency_s


def fit_ring_model(samples, grad_bytes):
    """Least-squares bandwidth (bytes/s) and latency (s) from measured (workers, all-reduce s).

    Both are identifiable only from two or more cluster sizes; from one, the latency is set to 0 and
    the whole time charged to bandwidth (an upper bound on the latency-free cost), and the result says so.
    """
    samples = [(int(n), float(s)) for n, s in samples if int(n) > 1 and s is not None and not math.isnan(s)]
    if not samples:
        return None
    volume = np.array([2 * (n - 1) / n * grad_bytes for n, _ in samples])
    hops = np.array([2.0 * (n - 1) for n, _ in samples])
    seconds = np.array([s for _, s in samples])
    identifiable = len({n for n, _ in samples}) >= 2
    if identifiable:
        (inverse_bandwidth, latency), *_ = np.linalg.lstsq(np.column_stack([volume, hops]), seconds, rcond=None)
        if latency < 0 or inverse_bandwidth <= 0:
            identifiable, latency = False, 0.0
    if not identifiable:
        latency = 0.0
        inverse_bandwidth = float(volume @ seconds / (volume @ volume))
    if inverse_bandwidth <= 0:
        raise KpbenchError("all-reduce times of zero: the ring model cannot be fitted")
    return {"bandwidth_bytes_s": 1.0 / float(inverse_bandwidth), "latency_s": float(latency),
            "identifiable": identifiable, "samples": len(samples),
            "cluster_sizes": sorted({n for n, _ in samples})}


def predicted_speedup(workers, compute_s, grad_bytes, bandwidth_gbps, latency_s=0.0):
    """Speedup of `workers` data-parallel workers over one, on links of `bandwidth_gbps`."""
    allreduce = ring_allreduce_s(workers, grad_bytes, bandwidth_gbps * 1e9 / 8, latency_s)
    return workers * compute_s / (compute_s + allreduce)


def reference_step_s(summary, instance):
    """Seconds per training step of the original study's single-GPU run of `instance`: its
    published training time over its epochs × steps per epoch."""
    rows = summary[(summary["source"] == "original study") & (summary["instance"] == instance)]
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
        if record["source"] == "kpbench":
            instance = ours.get(record["instance"], {})
            family = {"local-cluster": "local", "ec2-cluster": "ec2"}.get(instance.get("backend"))
            base = next((name for name, row in ours.items() if row["backend"] == family
                         and row.get("instance_type") == instance.get("instance_type")
                         and int(row.get("workers", 1)) == 1), None)
        else:
            base = record["instance"].split("x ", 1)[-1]
        baseline = summary[(summary["source"] == record["source"]) & (summary["instance"] == base)]
        if base is None or baseline.empty:
            continue
        speedup = float(record["images_per_s"]) / float(baseline.iloc[0]["images_per_s"])
        rows.append({"source": record["source"], "instance": record["instance"], "baseline": base,
                     "workers": workers, "speedup": speedup, "efficiency": speedup / workers,
                     "network_gbps": record.get("network_gbps")})
    return rows


def scaling_analysis(summary, runs, parameters, reference_instance, workers=(2, 4, 8)):
    """Everything the paper and the scaling figure show: measured speedups, the fitted model,
    and predicted speedups of the reference GPU at 5, 10, 25 and 100 Gbit/s."""
    grad_bytes = gradient_bytes(parameters)
    samples = [(run["cluster"]["workers"], run["cluster"].get("allreduce_wait_s"))
               for run in runs if run["cluster"]["workers"] > 1]
    model = fit_ring_model(samples, grad_bytes)
    compute = reference_step_s(summary, reference_instance)
    latency = model["latency_s"] if model else 0.0
    predictions = []
    if compute:
        for gbps in PREDICTED_GBPS:
            predictions.append({"gbps": gbps, "speedups": {n: predicted_speedup(n, compute, grad_bytes, gbps, latency)
                                                           for n in workers}})
    return {"gradient_bytes": grad_bytes, "model": model, "reference_instance": reference_instance,
            "reference_step_s": compute, "workers": list(workers), "predictions": predictions,
            "measured": measured_speedups(summary, runs)}
