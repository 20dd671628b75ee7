"""The epochs our runs needed to reach the quality target, which turn a predicted epoch time into a
time and a cost to the target: only runs of the same worker count compare."""

import statistics

from kpbench.core.layout import SOURCE_OURS


def epochs_reached(summary, workers=1):
    """The epochs to the quality target of each of our runs of the configured workload with `workers`
    workers that reached it: more workers train a larger global batch, so only runs of the same count
    compare."""
    ours = summary[(summary["source"] == SOURCE_OURS) & (summary["workers"].fillna(1).astype(int) == workers)]
    return ours["epochs_to_target"].dropna().astype(float)


def epochs_to_target(summary, workers=1):
    """Their median (None when no run reached the target)."""
    reached = epochs_reached(summary, workers)
    return float(statistics.median(reached)) if len(reached) else None


def epochs_range(summary):
    """[fewest, most] epochs our single-worker runs needed: the spread the median above hides."""
    reached = epochs_reached(summary)
    return [float(reached.min()), float(reached.max())] if len(reached) else None
