"""The analyse stage: summary + every run.json + the model → analysis.json, the one analysis both
the figures and the paper read, so they never disagree on which run is best or how a cluster scaled.

It reduces each instance's repeats once, ranks them, picks the run the predictions figure shows,
fits the scaling model, marks runs a reader must know about and groups runs by code version.
"""

import math
from collections import Counter
from pathlib import Path

import pandas as pd

from kpbench.analysis.aggregate import by_instance, load_summary
from kpbench.analysis.scaling import scaling_analysis
from kpbench.core.contention import contended
from kpbench.core.files import read_json
from kpbench.core.layout import SOURCE_OURS
from kpbench.core.metrics import METRICS
from kpbench.core.run_reader import read_run
from kpbench.core.version import code_label
from kpbench.machine.device_peaks import mfu


def plain(value):
    """JSON-ready: NaN and infinities become null (not measured), NumPy scalars plain numbers."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def run_marks(run, majority_code=None):
    """What a reader must know about how a run was measured: another load on the machine (its
    numbers are then left out of the means), a resume (its timings come from more than one
    process), or code other than most runs'. Empty for a run that had the machine to itself from
    start to end, made by the campaign's code."""
    marks = []
    record = run.get("contention") or {}
    if contended(run):
        share = record.get("foreign_cpu_share")
        marks.append("contended" + ("" if share is None else f": {100 * share:.0f} % of the CPU used by other processes")
                     + ("; other processes on its GPU" if record.get("gpu_foreign_processes") else ""))
    interruptions = (run.get("remote") or {}).get("interruptions") or []
    if run.get("resumed") or run["timings"].get("resumed_from_epoch") or interruptions:
        spot = (f" ({len(interruptions)} spot interruption{'s' if len(interruptions) != 1 else ''}, "
                f"{sum(i['work_lost_s'] for i in interruptions):.0f} s of work lost, every instance held billed)"
                if interruptions else "")
        marks.append(f"resumed after epoch {run['timings'].get('resumed_from_epoch') or 0}{spot}: its timings were "
                     "made by more than one process")
    if majority_code and code_label(run) != majority_code:
        marks.append(f"code {code_label(run)}, where most runs used {majority_code}")
    return marks


def code_versions(runs):
    """Which code made which runs; `mixed` when more than one version did."""
    labels = [code_label(run) for run in runs]
    counts = Counter(labels)
    versions = [{"code": label, "runs": [f"{run['instance']['name']} r{run.get('repeat', 1)}"
                                         for run, own in zip(runs, labels) if own == label]}
                for label, _ in counts.most_common()]
    return {"versions": versions, "mixed": len(versions) > 1,
            "majority": versions[0]["code"] if versions else None}


def best_run(runs):
    """The finished run with the lowest final validation RMSE (its predictions are drawn)."""
    scored = [run for run in runs if run["metrics"].get("val_rmse_px") is not None
              and math.isfinite(run["metrics"]["val_rmse_px"])]
    chosen = min(scored or runs, key=lambda run: run["metrics"].get("val_rmse_px") or 0.0) if runs else None
    return None if chosen is None else {"instance": chosen["instance"]["name"], "repeat": chosen.get("repeat", 1)}


def keypoint_rmse(runs, ours):
    """Per instance, each keypoint's validation RMSE averaged over the runs its row averages."""
    table = {}
    for row in ours:
        chosen = [run for run in runs if run["instance"]["name"] == row["instance"]
                  and run.get("repeat", 1) in row["averaged_repeats"]]
        names = {name for run in chosen for name in (run["metrics"].get("per_keypoint_rmse_px") or {})}
        table[row["instance"]] = {name: _mean([(run["metrics"].get("per_keypoint_rmse_px") or {}).get(name)
                                               for run in chosen]) for name in sorted(names)}
    return table


def _mean(values):
    present = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(present) / len(present) if present else None


def ranked(rows, column):
    """The instance with the least `column` among rows that have it; None when none has."""
    present = [row for row in rows if row.get(column) is not None]
    return min(present, key=lambda row: row[column])["instance"] if present else None


def analyse(summary_path, run_paths, model_path, settings):
    """analysis.json's content; `settings` holds the configuration's analysis section."""
    instances = plain(by_instance(load_summary(summary_path)).to_dict("records"))
    runs = [read_run(path) for path in run_paths]
    versions = code_versions(runs)
    for run, path in zip(runs, run_paths):
        run["folder"] = str(Path(path).parent)
        run["marks"] = run_marks(run, versions["majority"] if versions["mixed"] else None)
        performance = run["performance"]  # one MFU rule for every record, older ones included
        performance["mfu"] = mfu(performance.get("achieved_gflops"), performance.get("peak_tflops"))
    ours = [row for row in instances if row["source"] == SOURCE_OURS]
    scaling = scaling_analysis(pd.DataFrame(instances), runs, read_json(model_path)["trainable_parameters"],
                               settings["analysis"]["scaling_reference"])
    return plain({
        "metrics": [vars(metric) for metric in METRICS],
        "instances": instances,
        "fastest": ranked(instances, "projected_train_s"),
        "cheapest": ranked(instances, "projected_cost_usd"),
        "repeats": max((row["repeats"] for row in ours), default=0),
        "best_run": best_run(runs),
        "keypoint_rmse": keypoint_rmse(runs, ours),
        "scaling": scaling,
        "runs": runs,
        "code_versions": versions,
    })
