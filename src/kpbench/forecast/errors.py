"""The leave-one-out errors (kpbench.forecast.calibration.leave_one_out) summarised: per group,
the band a catalogue prediction carries, and how far apart the devices of one class are."""

import math
import statistics

from kpbench.forecast.calibration import geomean
from kpbench.forecast.perf_model import device_kind


def error_summary(results):
    """Median and worst absolute percentage error, model against naive, per group and per class kind,
    with the row held out, with its whole device held out and with its whole software held out (None
    where no row of the group could be); end to end too, over the rows that measured their fixed seconds."""
    groups = {}
    for r in results:
        kind = device_kind(r["class"]).upper()
        for key in (r["group"], f"{r['group']}: {kind}"):
            groups.setdefault(key, []).append(r)
    summary = []
    for key, members in groups.items():
        entry = {"group": key, "rows": len(members)}
        for prefix in ("", "machine_out_", "stack_out_"):
            model = [abs(r[f"{prefix}error"]) for r in members if f"{prefix}error" in r]
            naive = [abs(r[f"{prefix}naive_error"]) for r in members if f"{prefix}naive_error" in r]
            entry.update({f"{prefix}rows": len(model),
                          f"{prefix}median": statistics.median(model) if model else None,
                          f"{prefix}worst": max(model) if model else None,
                          f"{prefix}naive_median": statistics.median(naive) if naive else None,
                          f"{prefix}naive_worst": max(naive) if naive else None})
            # End to end, over the rows that measured their fixed seconds.
            e2e = [abs(r[f"{prefix}e2e_error"]) for r in members if r.get(f"{prefix}e2e_error") is not None]
            e2e_naive = [abs(r[f"{prefix}e2e_naive_error"]) for r in members
                         if r.get(f"{prefix}e2e_naive_error") is not None]
            entry.update({f"{prefix}e2e_rows": len(e2e),
                          f"{prefix}e2e_median": statistics.median(e2e) if e2e else None,
                          f"{prefix}e2e_worst": max(e2e) if e2e else None,
                          f"{prefix}e2e_naive_median": statistics.median(e2e_naive) if e2e_naive else None})
        summary.append(entry)
    return summary


def band_for(results, klass):
    """The error band a catalogue prediction carries, as a factor f (the truth within [t / f, t × f]):
    the worst ratio of predicted to measured time, either way, with the row's whole device held out
    (as for most catalogue machines, whose devices nobody here measured), among the single-machine
    rows of the same kind (CPU or GPU); of all of them where a kind has none. A ratio, not a
    percentage, because the worst misses are underpredictions by several times."""
    return math.exp(_worst_miss(results, klass)[0])


def bands(results):
    """Each device kind's band and the one row whose miss sets it, which the paper names."""
    return {device_kind(klass): {"factor": band_for(results, klass), "row": _worst_miss(results, klass)[1]}
            for klass in sorted({r["class"] for r in results})}


def _worst_miss(results, klass):
    """(|log(predicted / measured)|, row name) of the worst single-machine miss of the class's kind."""
    kind = device_kind(klass)
    misses = [(device_kind(r["class"]), abs(math.log(r["machine_out_predicted_s"] / r["measured_s"])), r["name"])
              for r in results if r["group"] == "single machine"]
    return max([(v, name) for k, v, name in misses if k == kind] or [(v, name) for _, v, name in misses])


def device_spread(results, klass):
    """How far apart the devices of one class are: the largest over the smallest of their efficiencies
    (each device's geometric mean over its single-machine rows); None with fewer than two devices."""
    by_device = {}
    for r in results:
        if r["group"] == "single machine" and r["class"] == klass:
            by_device.setdefault(r["device"], []).append(r["efficiency"])
    means = [geomean(values) for values in by_device.values()]
    return max(means) / min(means) if len(means) > 1 else None
