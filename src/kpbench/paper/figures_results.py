"""The results figures: the data, the learning curves, and time and cost per instance."""

import matplotlib.ticker
import numpy as np

from kpbench.core.layout import SOURCE_ORIGINAL, SOURCE_OURS
from kpbench.paper.plotting import COLOURS, face_grid, label_points, note, plain_log_ticks, plt, save, spread

PROVENANCE = {SOURCE_OURS: "projected from its runs", SOURCE_ORIGINAL: "as published"}


def sample_faces(samples_path, out_path, columns=6):
    """Training faces with the keypoints their rows carry (missing ones are simply not drawn)."""
    with np.load(samples_path) as s:
        images, targets, mask = s["images"], s["targets"], s["mask"]
    fig, axes = face_grid(len(images), columns)
    for ax, image, points, present in zip(axes, images, targets, mask):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        keep = present[0::2]
        ax.scatter(points[0::2][keep], points[1::2][keep], s=4, c="#ff3b30", linewidths=0)
        ax.set_title(f"{int(keep.sum())} of {len(keep)}", fontsize=6, pad=1)
    save(fig, out_path)


def predictions(predictions_path, out_path, columns=4):
    """Validation faces: true keypoints (green) against the model's predictions (red crosses)."""
    if predictions_path is None:
        return note("no run finished with predictions", out_path)
    with np.load(predictions_path) as p:
        images, true_px, mask, predicted = p["images"], p["true_px"], p["mask"], p["predicted_px"]
    if not len(images):
        return note("no run finished with predictions", out_path)
    fig, axes = face_grid(len(images), columns)
    for ax, image, truth, present, guess in zip(axes, images, true_px, mask, predicted):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        keep = present[0::2]
        ax.scatter(truth[0::2][keep], truth[1::2][keep], s=6, c="#34c759", linewidths=0, label="true")
        ax.scatter(guess[0::2], guess[1::2], s=8, c="#ff3b30", marker="x", linewidths=0.6, label="predicted")
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, 1.35), ncol=2, frameon=False)
    save(fig, out_path)


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
    save(fig, out_path)


def time_cost(summary, out_path):
    """Training time and cost of the original study's workload per instance, ours beside theirs: dots
    with their values printed (a bar's length on a log axis is no measure of anything)."""
    rows = summary[summary["projected_train_s"].notna()]
    labels = [f"{r.instance}\n({'ours' if r.source == SOURCE_OURS else 'original'})" for r in rows.itertuples()]
    colours = [COLOURS[source] for source in rows["source"]]
    fig, (time_ax, cost_ax) = plt.subplots(1, 2, figsize=(6.4, 2.8))
    positions = np.arange(len(rows))
    for ax, values, errors, text in (
            (time_ax, rows["projected_train_s"] / 60, spread(rows, "projected_train_s") / 60, "{:.1f}"),
            (cost_ax, rows["projected_cost_usd"], spread(rows, "projected_cost_usd"), "{:.3f}")):
        ax.errorbar(values, positions, xerr=errors, fmt="none", ecolor="black", elinewidth=0.6, capsize=1.5)
        ax.scatter(values, positions, c=colours, s=14, zorder=3)
        for value, position in zip(values, positions):
            ax.annotate(text.format(value), (value, position), xytext=(4, 3), textcoords="offset points", fontsize=5)
    time_ax.set_xlabel("training time (minutes, log scale)")
    cost_ax.set_xlabel("cost of one run (USD, log scale)")
    for ax in (time_ax, cost_ax):
        ax.set_xscale("log")
        ax.margins(x=0.15)
        plain_log_ticks(ax.xaxis)
        ax.set_yticks(positions)
        ax.invert_yaxis()
        ax.grid(True, axis="x", which="both", linewidth=0.3, alpha=0.5)
    time_ax.set_yticklabels(labels, fontsize=6)
    cost_ax.set_yticklabels([])
    save(fig, out_path)


def pareto(summary, out_path):
    """Cost against time of one run of the original study's workload: a machine is worth renting
    only if no other is both faster and cheaper (the Pareto front, drawn as a line)."""
    rows = summary[summary["projected_train_s"].notna() & summary["projected_cost_usd"].notna()]
    minutes, cost = rows["projected_train_s"].to_numpy() / 60, rows["projected_cost_usd"].to_numpy()
    front = [i for i in range(len(rows))
             if not ((minutes <= minutes[i]) & (cost <= cost[i]) & ((minutes < minutes[i]) | (cost < cost[i]))).any()]
    front.sort(key=lambda i: minutes[i])
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    xerr, yerr = spread(rows, "projected_train_s") / 60, spread(rows, "projected_cost_usd")
    repeated = (xerr.sum(axis=0) + yerr.sum(axis=0)) > 0  # a single run has no spread to draw
    ax.errorbar(minutes[repeated], cost[repeated], xerr=xerr[:, repeated], yerr=yerr[:, repeated], fmt="none",
                ecolor="black", elinewidth=0.5, capsize=1.5)
    for source, marker in ((SOURCE_OURS, "o"), (SOURCE_ORIGINAL, "s")):
        chosen = (rows["source"] == source).to_numpy()
        ax.scatter(minutes[chosen], cost[chosen], c=COLOURS[source], marker=marker, s=28,
                   edgecolors="black", linewidths=0.4, label=f"{source}, {PROVENANCE[source]}")
    ax.plot(minutes[front], cost[front], color="black", linewidth=0.6, linestyle="--", label="Pareto front")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        plain_log_ticks(axis)
    ax.margins(0.15)
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("cost of one run (USD)")
    ax.grid(True, which="major", linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, loc="lower right")
    label_points(ax, list(zip(minutes, cost, rows["instance"])), fontsize=6, gap=5)
    save(fig, out_path)
