"""The analysis figures: scaling and the all-reduce, forward fill, and the predictions for machines
nobody has rented yet."""

import numpy as np

from kpbench.core.layout import SOURCE_ORIGINAL, SOURCE_OURS
from kpbench.paper.plotting import COLOURS, label_points, note, plain_log_ticks, plt, save


def scaling(analysis, out_path):
    """Predicted speedup over one worker against workers, per network bandwidth, with the measured
    cluster speedups (ours and the original study's) as points."""
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    most = max(analysis["workers"])
    ax.plot([1, most], [1, most], color="black", linewidth=0.6, linestyle=":", label="ideal, one machine per worker")
    for index, prediction in enumerate(analysis["predictions"]):
        workers = [1, *map(int, prediction["speedups"])]
        ax.plot(workers, [1.0, *prediction["speedups"].values()], color=f"C{index}", linewidth=1.0, marker=".",
                label=f"model, {prediction['gbps']:g} Gbit/s")
    if any(m["loopback"] for m in analysis["measured"]):
        ax.axhline(1.0, color="black", linewidth=0.6, linestyle="-.", label="ideal, workers sharing one machine")
    # Ours a little left of their worker count, the original study's a little right: equal counts stay apart.
    nudge = {SOURCE_OURS: -0.06, SOURCE_ORIGINAL: 0.06}
    for source, marker in ((SOURCE_OURS, "o"), (SOURCE_ORIGINAL, "s")):
        points = [m for m in analysis["measured"] if m["source"] == source and m["speedup"] is not None]
        for m in points:  # the range over the repeats, where there were several
            if m.get("speedup_low") is not None:
                ax.errorbar(m["workers"] + nudge[source], m["speedup"], yerr=[[m["speedup"] - m["speedup_low"]],
                            [m["speedup_high"] - m["speedup"]]], fmt="none", ecolor="black", elinewidth=0.6, capsize=2,
                            zorder=4)  # over the marker, which would hide a short range
        if points:
            ax.scatter([m["workers"] + nudge[source] for m in points], [m["speedup"] for m in points], marker=marker, s=28,
                       c=COLOURS[source], edgecolors="black", linewidths=0.4, zorder=3,
                       label=f"measured, {source}")
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup over one worker")
    ax.set_xticks([1, *analysis["workers"]])
    ax.set_ylim(0, most + 0.5)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, fontsize=6, loc="upper left")
    label_points(ax, [(m["workers"] + nudge[m["source"]], m["speedup"], m["instance"])
                      for m in analysis["measured"] if m["speedup"] is not None], fontsize=6, gap=5)
    save(fig, out_path)


def allreduce(analysis, out_path):
    """The measured all-reduce sweep of every cluster run, log–log: time per call and bus bandwidth
    against message size, one line per run, with each run's physical reference (this machine's
    memory copy for loopback clusters, the link for networked ones) as a dashed line."""
    if not analysis["fits"]:
        return note("no cluster run measured an all-reduce sweep", out_path)

    def column(rows, name, scale):
        return np.array([np.nan if row.get(name) is None else row[name] * scale for row in rows], dtype=float)

    fig, (time_ax, bandwidth_ax) = plt.subplots(1, 2, figsize=(6.4, 2.6))
    for index, fit in enumerate(analysis["fits"]):
        colour, label = f"C{index}", f"{fit['instance']} r{fit['repeat']}"
        rows = [row for row in fit["sweep"] if row["median_s"] and row["median_s"] > 0]
        size_mb = column(rows, "bytes", 1e-6)
        median, low, high = (column(rows, name, 1e3) for name in ("median_s", "p10_s", "p90_s"))
        spread = np.nan_to_num(np.vstack([median - low, high - median]))
        time_ax.errorbar(size_mb, median, yerr=spread, fmt="-o", ms=2, linewidth=0.9, elinewidth=0.5,
                         color=colour, label=label)
        bandwidth_ax.plot(size_mb, column(rows, "busbw_bytes_s", 1e-9), "-o", ms=2, linewidth=0.9,
                          color=colour, label=label)
        if fit["reference_bytes_s"]:
            bandwidth_ax.axhline(fit["reference_bytes_s"] / 1e9, color=colour, linestyle="--", linewidth=0.6,
                                 label=f"{fit['reference_kind']}, {label}")
    for ax in (time_ax, bandwidth_ax):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("message size (MB)")
        ax.grid(True, which="major", linewidth=0.3, alpha=0.5)
    time_ax.set_ylabel("time per all-reduce (ms)")
    bandwidth_ax.set_ylabel("bus bandwidth (GB/s)")
    bandwidth_ax.legend(frameon=False, fontsize=5.5)
    save(fig, out_path)


def _forward_fill_series(result):
    """(label, colour, model) of every training the forward-fill measurement made: the two whole
    procedures, and where it was made the labels-only pair (kpbench's procedure on either labels)."""
    models, labels_only = result["models"], result.get("labels_only")
    series = [("study's procedure, forward-filled labels", "#ff7f0e", models["forward_filled"]),
              ("kpbench's procedure, masked labels", COLOURS[SOURCE_OURS], models["masked"])]
    if labels_only:
        series += [("labels only: kpbench's, forward-filled", "#d62728", labels_only["forward_filled"]),
                   ("labels only: kpbench's, masked", "#9ecae1", labels_only["masked"])]
    return series


def forward_fill(result, out_path):
    """Validation RMSE against the true keypoints, on the coordinates the CSV labels and on those it
    leaves blank, for every training the measurement made (left); per keypoint on the blanks, with the
    forward-filled labels themselves beside them (right)."""
    if not result or not result.get("ground_truth"):
        return note("no ground truth: forward fill's cost is measured on synthetic faces only", out_path)
    series = _forward_fill_series(result)
    invented = result["validation"]["invented_rmse_per_keypoint_px"]
    names = [name for name, value in result["models"]["masked"]["blank_rmse_per_keypoint_px"].items()
             if value is not None]
    fig, (overall, by_keypoint) = plt.subplots(1, 2, figsize=(7.0, 2.6), gridspec_kw={"width_ratios": [1.3, 3.2]})
    width = 0.8 / len(series)
    for index, (label, colour, model) in enumerate(series):
        values = [model["labelled_rmse_px"], model["blank_rmse_px"]]
        overall.bar(np.arange(2) + (index - (len(series) - 1) / 2) * width, [np.nan if v is None else v for v in values],
                    width, color=colour, label=label)
    overall.set_xticks(np.arange(2), ["labelled", "blank in CSV"])
    overall.set_ylabel("validation RMSE vs truth (px)")
    per_keypoint = [("forward-filled labels", "#bbbbbb", invented)] + [
        (label, colour, model["blank_rmse_per_keypoint_px"]) for label, colour, model in series]
    width = 0.8 / len(per_keypoint)
    for index, (label, colour, values) in enumerate(per_keypoint):
        by_keypoint.bar(np.arange(len(names)) + (index - (len(per_keypoint) - 1) / 2) * width,
                        [np.nan if values[k] is None else values[k] for k in names], width, color=colour, label=label)
    by_keypoint.set_xticks(np.arange(len(names)), [k.replace("_", " ") for k in names], rotation=40, ha="right",
                           fontsize=6)
    by_keypoint.set_ylabel("RMSE on blank keypoints (px)")
    by_keypoint.legend(frameon=False, ncol=3, fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    save(fig, out_path)


def predicted_measured(result, out_path):
    """Leave-one-out: each measured row's training time predicted without it and without every row
    of its device, against the measurement, beside the naive peak-ratio baseline; log-log with the
    diagonal."""
    if not result:
        note("no predictions", out_path)
        return
    rows = result["validation"]
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    for key, marker, label, colour in (("predicted_s", "o", "model, row held out", COLOURS[SOURCE_OURS]),
                                       ("machine_out_predicted_s", "^", "model, device held out", "#d95f02"),
                                       ("naive_s", "x", "naive peak ratio", "#888888")):
        for group, fill in (("single machine", True), ("cluster", False)):
            chosen = [r for r in rows if r["group"] == group]
            # An "x" cannot be hollow: the naive clusters get a "+" instead.
            style = ({"color": colour} if marker == "x" else
                     {"facecolors": colour if fill else "none", "edgecolors": colour})
            ax.scatter([r["measured_s"] for r in chosen], [r[key] for r in chosen],
                       marker="+" if marker == "x" and not fill else marker, s=22, label=f"{label}, {group}", **style)
    values = [v for r in rows for v in (r["measured_s"], r["predicted_s"], r["machine_out_predicted_s"], r["naive_s"])]
    low, high = min(values) / 2, max(values) * 2
    ax.plot([low, high], [low, high], color="black", linewidth=0.6, linestyle="--")
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high),
           xlabel="reference training time of the original study's workload (s; steps × measured step)",
           ylabel="predicted, leave-one-out (s)")
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=6)  # clear of labels
    label_points(ax, [(r["measured_s"], r["predicted_s"], r["name"]) for r in rows])
    save(fig, out_path)


def rent_by_size(result, out_path):
    """Billed cost of one rental against the workload's size (epochs of its images), log-log, for the
    machines cheapest at some size and the fastest, with the sizes where the cheapest changes marked:
    fixed costs decide small workloads, throughput large ones."""
    from kpbench.forecast.rental import cost_at

    result = result or {}
    by_size, catalogue = result.get("cheapest_by_size") or [], {r["instance_type"]: r for r in result.get("catalogue", [])}
    if not by_size:
        note("no predictions", out_path)
        return
    workload = result["workload"]
    current = [r for r in catalogue.values() if r["status"] == "current" and r["cost_usd"] is not None]
    shown = list(dict.fromkeys([b["instance_type"] for b in by_size] + [min(current, key=lambda r: r["rental_s"])["instance_type"]]))
    epochs = [b["epochs"] for b in by_size]
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for name in shown:
        row = catalogue[name]
        costs = [cost_at(row, e, workload) for e in epochs]
        ax.plot([e * workload["train_images"] for e in epochs], costs, linewidth=0.9, label=name)
    for change in result.get("crossovers", []):
        ax.axvline(change["epochs"] * workload["train_images"], color="#888888", linewidth=0.5, linestyle=":")
    ax.axvline(workload["epochs"] * workload["train_images"], color="black", linewidth=0.6, linestyle="--")
    ax.set(xscale="log", yscale="log", xlabel="training images seen (epochs x images)",
           ylabel="predicted billed cost (USD)")
    ax.legend(fontsize=5, frameon=False)
    save(fig, out_path)


def rent_pareto(result, out_path):
    """Predicted billed cost against end-to-end time of one rental for the configured workload on
    today's catalogue, with the training's bands, and the Pareto front joined."""
    rows = [r for r in (result or {}).get("catalogue", []) if r["status"] == "current" and r["cost_usd"]]
    if not rows:
        note("no predictions", out_path)
        return
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for r in rows:
        ax.errorbar(r["rental_s"], r["cost_usd"], xerr=[[r["rental_s"] - r["rental_s_low"]],
                                                        [r["rental_s_high"] - r["rental_s"]]],
                    fmt="o", markersize=3, color=COLOURS[SOURCE_OURS] if r["pareto"] else "#888888",
                    elinewidth=0.5, capsize=0)
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["rental_s"])
    ax.plot([r["rental_s"] for r in front], [r["cost_usd"] for r in front], "--", color=COLOURS[SOURCE_OURS],
            linewidth=0.8)
    ax.set(xscale="log", yscale="log", xlabel="predicted end-to-end time of the rental (s)",
           ylabel="predicted billed cost (USD)")
    for axis in (ax.xaxis, ax.yaxis):
        plain_log_ticks(axis)
    label_points(ax, [(r["rental_s"], r["cost_usd"], r["instance_type"]) for r in rows])
    save(fig, out_path)


def roofline(result, out_path):
    """The reference model's layers on each device's roofline: arithmetic intensity (FLOP/byte,
    forward and backward together) against attainable FLOP/s, compute-bound layers filled."""
    if not result:
        note("no predictions", out_path)
        return
    devices = result["rooflines"]
    fig, axes = plt.subplots(1, len(devices), figsize=(3.4 * len(devices), 3.0), sharey=False)
    for ax, (device, roof) in zip(np.atleast_1d(axes), devices.items()):
        layers = [layer for layer in roof["layers"] if layer["forward_s"] + layer["backward_s"] > 0]
        intensity = np.array([layer["intensity"] for layer in layers])
        ridge = roof["flops_s"] / roof["bytes_s"]
        grid = np.logspace(np.log10(min(intensity.min(), ridge) / 2), np.log10(max(intensity.max(), ridge) * 2), 100)
        ax.plot(grid, np.minimum(roof["flops_s"], grid * roof["bytes_s"]) / 1e9, color="black", linewidth=0.8)
        attainable = np.minimum(roof["flops_s"], intensity * roof["bytes_s"]) / 1e9
        compute = intensity >= ridge
        ax.scatter(intensity[compute], attainable[compute], s=14, color=COLOURS[SOURCE_OURS], label="compute-bound")
        ax.scatter(intensity[~compute], attainable[~compute], s=14, facecolors="none",
                   edgecolors=COLOURS[SOURCE_OURS], label="memory-bound")
        ax.set(xscale="log", yscale="log", xlabel="FLOP per byte moved", ylabel="attainable GFLOP/s",
               title=f"{device} x {roof['devices']}")
        ax.legend(frameon=False, loc="lower right")
    save(fig, out_path)
