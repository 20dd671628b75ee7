"""Figures stage: vector PDFs from stored results alone (no data, no TensorFlow), byte-stable."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kpbench.aggregate import SOURCE_ORIGINAL, SOURCE_OURS, by_instance, load_summary  # noqa: E402
from kpbench.io import atomic_path, read_json  # noqa: E402
from kpbench.records import read_run  # noqa: E402

# No dates or versions in the files: the same results give the same bytes.
PDF_METADATA = {"Creator": "kpbench", "Producer": "kpbench", "CreationDate": None}
COLOURS = {SOURCE_OURS: "#1f77b4", SOURCE_ORIGINAL: "#bbbbbb"}

plt.rcParams.update({
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "pdf.fonttype": 42, "svg.hashsalt": "kpbench", "axes.spines.top": False, "axes.spines.right": False,
})


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="pdf", metadata=PDF_METADATA, bbox_inches="tight")
    plt.close(fig)


def _note(text, out_path):
    """A figure that says why it has nothing to draw, so the paper still builds and says so."""
    fig, ax = plt.subplots(figsize=(3.2, 1.0))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    _save(fig, out_path)


def _face_grid(count, columns):
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.1))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    return fig, axes[:count]


def sample_faces(samples_path, out_path, columns=6):
    """Training faces with the keypoints their rows carry (missing ones are simply not drawn)."""
    with np.load(samples_path) as s:
        images, targets, mask = s["images"], s["targets"], s["mask"]
    fig, axes = _face_grid(len(images), columns)
    for ax, image, points, present in zip(axes, images, targets, mask):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        keep = present[0::2]
        ax.scatter(points[0::2][keep], points[1::2][keep], s=4, c="#ff3b30", linewidths=0)
        ax.set_title(f"{int(keep.sum())} of {len(keep)}", fontsize=6, pad=1)
    _save(fig, out_path)


def predictions(predictions_path, out_path, columns=4):
    """Validation faces: true keypoints (green) against the model's predictions (red crosses)."""
    with np.load(predictions_path) as p:
        images, true_px, mask, predicted = p["images"], p["true_px"], p["mask"], p["predicted_px"]
    if not len(images):
        return _note("no run finished with predictions", out_path)
    fig, axes = _face_grid(len(images), columns)
    for ax, image, truth, present, guess in zip(axes, images, true_px, mask, predicted):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        keep = present[0::2]
        ax.scatter(truth[0::2][keep], truth[1::2][keep], s=6, c="#34c759", linewidths=0, label="true")
        ax.scatter(guess[0::2], guess[1::2], s=8, c="#ff3b30", marker="x", linewidths=0.6, label="predicted")
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, 1.35), ncol=2, frameon=False)
    _save(fig, out_path)


def learning_curves(histories, out_path):
    """Validation RMSE against epoch and against wall-clock seconds: one colour per instance, one
    line per repeat (`histories` maps (instance, repeat) to a history)."""
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(6.4, 2.4), sharey=True)
    colours = {}
    for (instance, repeat), history in histories.items():
        colour = colours.setdefault(instance, f"C{len(colours)}")
        label = instance if repeat == min(r for i, r in histories if i == instance) else None
        for ax, x in ((by_epoch, "epoch"), (by_time, "elapsed_s")):
            ax.plot(history[x], history["val_rmse_px"], marker="o", ms=2, color=colour, label=label,
                    linewidth=1.0, alpha=0.9)
    by_epoch.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("wall-clock seconds since fit began")
    by_epoch.set_ylabel("validation RMSE (pixels)")
    for ax in (by_epoch, by_time):
        ax.grid(True, linewidth=0.3, alpha=0.5)
    by_time.legend(frameon=False)
    _save(fig, out_path)


def _spread(rows, column):
    """Error-bar lengths (below, above) from the olympic mean to the slowest and fastest repeat."""
    centre = rows[column].to_numpy(dtype=float)
    low = rows[f"{column}_min"].fillna(rows[column]).to_numpy(dtype=float)
    high = rows[f"{column}_max"].fillna(rows[column]).to_numpy(dtype=float)
    return np.vstack([centre - low, high - centre])


def time_cost(summary, out_path):
    """Training time and cost of the original study's workload per instance, ours beside theirs."""
    rows = summary[summary["projected_train_s"].notna()]
    labels = [f"{r.instance}\n({'ours' if r.source == SOURCE_OURS else 'original'})" for r in rows.itertuples()]
    colours = [COLOURS[source] for source in rows["source"]]
    fig, (time_ax, cost_ax) = plt.subplots(1, 2, figsize=(6.4, 2.8))
    positions = np.arange(len(rows))
    bars = {"error_kw": {"elinewidth": 0.6, "capsize": 1.5}}
    time_ax.barh(positions, rows["projected_train_s"] / 60, color=colours,
                 xerr=_spread(rows, "projected_train_s") / 60, **bars)
    time_ax.set_xlabel("training time (minutes, log scale)")
    cost_ax.barh(positions, rows["projected_cost_usd"], color=colours, xerr=_spread(rows, "projected_cost_usd"),
                 **bars)
    cost_ax.set_xlabel("cost of one run (USD, log scale)")
    for ax in (time_ax, cost_ax):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks(positions)
        ax.invert_yaxis()
        ax.grid(True, axis="x", which="both", linewidth=0.3, alpha=0.5)
    time_ax.set_yticklabels(labels, fontsize=6)
    cost_ax.set_yticklabels([])
    _save(fig, out_path)


def pareto(summary, out_path):
    """Cost against time of one run of the original study's workload: a machine is worth renting
    only if no other is both faster and cheaper (the Pareto front, drawn as a line)."""
    rows = summary[summary["projected_train_s"].notna() & summary["projected_cost_usd"].notna()]
    minutes, cost = rows["projected_train_s"].to_numpy() / 60, rows["projected_cost_usd"].to_numpy()
    front = [i for i in range(len(rows))
             if not ((minutes <= minutes[i]) & (cost <= cost[i]) & ((minutes < minutes[i]) | (cost < cost[i]))).any()]
    front.sort(key=lambda i: minutes[i])
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    ax.errorbar(minutes, cost, xerr=_spread(rows, "projected_train_s") / 60,
                yerr=_spread(rows, "projected_cost_usd"), fmt="none", ecolor="black", elinewidth=0.5, capsize=1.5)
    for source, marker in ((SOURCE_OURS, "o"), (SOURCE_ORIGINAL, "s")):
        chosen = (rows["source"] == source).to_numpy()
        ax.scatter(minutes[chosen], cost[chosen], c=COLOURS[source], marker=marker, s=28,
                   edgecolors="black", linewidths=0.4, label="kpbench" if source == SOURCE_OURS else "original study")
    ax.plot(minutes[front], cost[front], color="black", linewidth=0.6, linestyle="--", label="Pareto front")
    # Neighbours in time get labels above and below in turn, so close points stay readable.
    for rank, i in enumerate(np.argsort(minutes, kind="stable")):
        ax.annotate(rows["instance"].iloc[i], (minutes[i], cost[i]), xytext=(4, 4 if rank % 2 == 0 else -9),
                    textcoords="offset points", fontsize=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(0.15)
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("cost of one run (USD)")
    ax.grid(True, which="major", linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, loc="lower right")
    _save(fig, out_path)


def scaling(analysis, out_path):
    """Predicted speedup over one worker against workers, per network bandwidth, with the measured
    cluster speedups (ours and the original study's) as points."""
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    most = max(analysis["workers"])
    ax.plot([1, most], [1, most], color="black", linewidth=0.6, linestyle=":", label="ideal, one machine per worker")
    for index, prediction in enumerate(analysis["predictions"]):
        workers = [1, *prediction["speedups"]]
        ax.plot(workers, [1.0, *prediction["speedups"].values()], color=f"C{index}", linewidth=1.0, marker=".",
                label=f"model, {prediction['gbps']:g} Gbit/s")
    if any(m["loopback"] for m in analysis["measured"]):
        ax.axhline(1.0, color="black", linewidth=0.6, linestyle="-.", label="ideal, workers sharing one machine")
    for source, marker in ((SOURCE_OURS, "o"), (SOURCE_ORIGINAL, "s")):
        points = [m for m in analysis["measured"] if m["source"] == source]
        if points:
            ax.scatter([m["workers"] for m in points], [m["speedup"] for m in points], marker=marker, s=28,
                       c=COLOURS[source], edgecolors="black", linewidths=0.4, zorder=3,
                       label=f"measured, {'kpbench' if source == SOURCE_OURS else 'original study'}")
            for m in points:  # ours labelled above their points, the original study's below
                ax.annotate(m["instance"], (m["workers"], m["speedup"]),
                            xytext=(5, 3) if source == SOURCE_OURS else (5, -9),
                            textcoords="offset points", fontsize=6)
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup over one worker")
    ax.set_xticks([1, *analysis["workers"]])
    ax.set_ylim(0, most + 0.5)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, fontsize=6, loc="upper left")
    _save(fig, out_path)


def allreduce(analysis, out_path):
    """The measured all-reduce sweep of every cluster run, log–log: time per call and bus bandwidth
    against message size, one line per run, with each run's physical reference (this machine's
    memory copy for loopback clusters, the link for networked ones) as a dashed line."""
    if not analysis["fits"]:
        return _note("no cluster run measured an all-reduce sweep", out_path)

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
    _save(fig, out_path)


FORWARD_FILL_SERIES = (("invented", "forward-filled labels", "#bbbbbb"),
                       ("forward_filled", "model trained on them (MSE)", "#ff7f0e"),
                       ("masked", "kpbench's masked model", COLOURS[SOURCE_OURS]))


def forward_fill(result, out_path):
    """Validation RMSE against the true keypoints: on the coordinates the CSV labels and on those it
    leaves blank, for the forward-filled and the masked model (left); per keypoint on the blanks,
    with the forward-filled labels themselves beside them (right)."""
    if not result or not result.get("ground_truth"):
        return _note("no ground truth: forward fill's cost is measured on synthetic faces only", out_path)
    models, per_keypoint = result["models"], {"invented": result["validation"]["invented_rmse_per_keypoint_px"]}
    per_keypoint.update({name: models[name]["blank_rmse_per_keypoint_px"] for name in models})
    names = [name for name, value in per_keypoint["masked"].items() if value is not None]
    fig, (overall, by_keypoint) = plt.subplots(1, 2, figsize=(7.0, 2.6), gridspec_kw={"width_ratios": [1, 3.2]})
    width = 0.38
    for offset, (name, label, colour) in zip((-width / 2, width / 2), FORWARD_FILL_SERIES[1:]):
        values = [models[name]["labelled_rmse_px"], models[name]["blank_rmse_px"]]
        overall.bar(np.arange(2) + offset, [np.nan if v is None else v for v in values], width, color=colour,
                    label=label)
    overall.set_xticks(np.arange(2), ["labelled", "blank in CSV"])
    overall.set_ylabel("validation RMSE vs truth (px)")
    width = 0.27
    for offset, (name, label, colour) in zip((-width, 0.0, width), FORWARD_FILL_SERIES):
        values = [per_keypoint[name][k] for k in names]
        by_keypoint.bar(np.arange(len(names)) + offset, [np.nan if v is None else v for v in values], width,
                        color=colour, label=label)
    by_keypoint.set_xticks(np.arange(len(names)), [k.replace("_", " ") for k in names], rotation=40, ha="right",
                           fontsize=6)
    by_keypoint.set_ylabel("RMSE on blank keypoints (px)")
    by_keypoint.legend(frameon=False, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    _save(fig, out_path)


def predicted_measured(result, out_path):
    """Leave-one-out: each measured row's training time predicted without it, against the
    measurement, for the model and the naive peak-ratio baseline; log-log with the diagonal."""
    if not result:
        _note("no predictions", out_path)
        return
    rows = result["validation"]
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    for key, marker, label, colour in (("predicted_s", "o", "roofline model", COLOURS[SOURCE_OURS]),
                                       ("naive_s", "x", "naive peak ratio", "#888888")):
        for group, fill in (("single machine", True), ("cluster", False)):
            chosen = [r for r in rows if r["group"] == group]
            style = ({"color": colour} if marker == "x" else
                     {"facecolors": colour if fill else "none", "edgecolors": colour})
            ax.scatter([r["measured_s"] for r in chosen], [r[key] for r in chosen], marker=marker, s=22,
                       label=f"{label}, {group}", **style)
    for r in rows:
        ax.annotate(r["name"], (r["measured_s"], r["predicted_s"]), fontsize=5, xytext=(3, 2),
                    textcoords="offset points")
    values = [v for r in rows for v in (r["measured_s"], r["predicted_s"], r["naive_s"])]
    low, high = min(values) / 2, max(values) * 2
    ax.plot([low, high], [low, high], color="black", linewidth=0.6, linestyle="--")
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high),
           xlabel="measured training time of the original study's workload (s)",
           ylabel="predicted, leave-one-out (s)")
    ax.legend(frameon=False, loc="upper left")
    _save(fig, out_path)


def rent_pareto(result, out_path):
    """Predicted cost against time of the configured workload on today's catalogue, with the bands,
    and the Pareto front joined."""
    rows = [r for r in (result or {}).get("catalogue", []) if r["status"] == "current" and r["cost_usd"]]
    if not rows:
        _note("no predictions", out_path)
        return
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    # Neighbours in time get labels above and below in turn, so close points stay readable.
    for rank, r in enumerate(sorted(rows, key=lambda r: r["train_s"])):
        ax.errorbar(r["train_s"], r["cost_usd"], xerr=[[r["train_s"] - r["train_s_low"]],
                                                       [r["train_s_high"] - r["train_s"]]],
                    fmt="o", markersize=3, color=COLOURS[SOURCE_OURS] if r["pareto"] else "#888888",
                    elinewidth=0.5, capsize=0)
        ax.annotate(r["instance_type"], (r["train_s"], r["cost_usd"]), fontsize=5,
                    xytext=(3, 3 if rank % 2 == 0 else -7), textcoords="offset points")
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["train_s"])
    ax.plot([r["train_s"] for r in front], [r["cost_usd"] for r in front], "--", color=COLOURS[SOURCE_OURS],
            linewidth=0.8)
    ax.set(xscale="log", yscale="log", xlabel="predicted training time (s)", ylabel="predicted cost (USD)")
    _save(fig, out_path)


def roofline(result, out_path):
    """The reference model's layers on each device's roofline: arithmetic intensity (FLOP/byte,
    forward and backward together) against attainable FLOP/s, compute-bound layers filled."""
    if not result:
        _note("no predictions", out_path)
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
    _save(fig, out_path)


def _best_run(histories):
    """The run whose last validation RMSE is lowest; a run that recorded none comes last."""
    def last_rmse(key):
        values = histories[key]["val_rmse_px"].dropna()
        return (values.empty, values.iloc[-1] if not values.empty else 0.0)
    return min(histories, key=last_rmse)


def render_all(summary_path, samples_path, run_paths, model_path, scaling_reference, out_dir,
               forward_fill_path=None, predictions_path=None):
    """All figures of the paper from the summary and every run's files (run.json paths given);
    our repeated runs appear as olympic means with their spread as error bars."""
    from kpbench.scaling import scaling_analysis

    out_dir = Path(out_dir)
    summary = by_instance(load_summary(summary_path))
    loaded = [(Path(path), read_run(path)) for path in run_paths]
    runs = {(run["instance"]["name"], run.get("repeat", 1)): path.parent for path, run in loaded}
    histories = {key: pd.read_csv(folder / "history.csv") for key, folder in runs.items()}
    best = _best_run(histories)
    analysis = scaling_analysis(summary, [run for _, run in loaded], read_json(model_path)["trainable_parameters"],
                                scaling_reference)
    sample_faces(samples_path, out_dir / "sample_faces.pdf")
    predictions(runs[best] / "predictions.npz", out_dir / "predictions.pdf")
    learning_curves(histories, out_dir / "learning_curves.pdf")
    time_cost(summary, out_dir / "time_cost.pdf")
    pareto(summary, out_dir / "pareto.pdf")
    scaling(analysis, out_dir / "scaling.pdf")
    allreduce(analysis, out_dir / "allreduce.pdf")
    forward_fill(read_json(forward_fill_path) if forward_fill_path else None, out_dir / "forward_fill.pdf")
    predicted = read_json(predictions_path) if predictions_path else None
    predicted_measured(predicted, out_dir / "predicted_measured.pdf")
    roofline(predicted, out_dir / "roofline.pdf")
    rent_pareto(predicted, out_dir / "rent_pareto.pdf")
    return best
