"""Aggregate stage: every run.json and the original study's published rows → results/summary.csv."""

from pathlib import Path

import pandas as pd

from kpbench import KpbenchError
from kpbench.core import billing
from kpbench.core.catalogue import CATALOGUE, read_catalogue
from kpbench.core.contention import contended
from kpbench.core.files import atomic_path
from kpbench.core.layout import HISTORY_CSV, SOURCE_ORIGINAL, SOURCE_OURS, original_instance_type
from kpbench.core.metrics import METRICS, REPEATED
from kpbench.core.run_reader import finished, read_run
from kpbench.machine.device_peaks import device_entry, mfu, peak_for

# What identifies a summary row; every measured column comes from kpbench.core.metrics.
IDENTITY_COLUMNS = [
    "source", "instance", "backend", "status", "ec2_catalogue", "vcpus", "gpu_model", "gpus", "workers",
    "network_gbps", "epochs", "train_images", "batch_size", "precision", "usd_per_hour", "price_date",
    "target_rmse_px", "repeat", "seed", "config_hash", "contended", "resumed", "note",
]
SUMMARY_COLUMNS = IDENTITY_COLUMNS + [metric.name for metric in METRICS]


def time_to_target(history, target_rmse_px):
    """(epoch, seconds since fit began) at which validation RMSE first reached the target, as
    DAWNBench ranks training; (None, None) when it never did. Validation runs once per epoch."""
    reached = history[history["val_rmse_px"] <= target_rmse_px]
    if reached.empty:
        return None, None
    first = reached.iloc[0]
    return int(first["epoch"]), float(first["elapsed_s"])


def run_row(run, reference, history=None, target_rmse_px=None):
    """One summary row from a run.json; `projected_*` scale it to the original study's workload,
    `*_to_target` read its history against the quality target."""
    instance, timings, workload = run["instance"], run["timings"], run["workload"]
    usd_per_hour = run["cost"]["usd_per_hour"]
    performance = run["performance"]
    projected = billing.projected_run_train_s(run, reference)
    return {
        "source": SOURCE_OURS, "instance": instance["name"], "backend": instance["backend"],
        "status": "measured" if finished(run) else "failed", "ec2_catalogue": instance.get("ec2_catalogue", "n/a"),
        "vcpus": run["hardware"]["cpu_cores"], "gpu_model": ", ".join(run["hardware"]["gpu_names"]) or None,
        "gpus": run["hardware"]["gpu_count"], "workers": instance.get("workers", 1),
        "network_gbps": instance.get("network_gbps"), "epochs": workload["epochs"],
        "train_images": workload["train_images"], "batch_size": workload["batch_size"],
        "init_s": timings["init_s"], "train_s": timings["train_s"], "wall_s": timings["wall_s"],
        "images_per_s": timings["images_per_s"], "achieved_gflops": performance.get("achieved_gflops"),
        "share_of_matmul": performance.get("share_of_matmul"),
        "mfu": mfu(performance.get("achieved_gflops"), performance.get("peak_tflops")),
        "precision": performance.get("precision"), "val_rmse_px": run["metrics"]["val_rmse_px"],
        "val_mae_px": run["metrics"]["val_mae_px"], "val_pck": run["metrics"]["val_pck"],
        "usd_per_hour": usd_per_hour, "price_date": run["cost"]["price_date"], "cost_usd": run["cost"]["usd"],
        "stall_s": stall_s(timings), "projected_train_s": projected,
        "projected_cost_usd": billing.run_cost_usd(None if projected is None or timings["init_s"] is None
                                                 else timings["init_s"] + projected, usd_per_hour),
        "repeat": run.get("repeat", 1), "seed": run["seed"], "config_hash": run["config_hash"],
        "contended": contended(run), "foreign_cpu_share": (run.get("contention") or {}).get("foreign_cpu_share"),
        "resumed": bool(timings.get("resumed_from_epoch")), "note": instance.get("note"),
        **_to_target(run, history, target_rmse_px, usd_per_hour),
    }


def stall_s(timings):
    """Seconds inside `fit` but outside every epoch (set-up, teardown, a stalled machine): shown as
    measured, and left out of the projection, which no stall should scale."""
    epochs = timings.get("epoch_s")
    if timings.get("train_s") is None or not epochs:
        return None
    return timings["train_s"] - sum(epochs)


def _to_target(run, history, target_rmse_px, usd_per_hour):
    if history is None or target_rmse_px is None:
        return {}
    epoch, elapsed = time_to_target(history, target_rmse_px)
    init = run["timings"]["init_s"]
    # Timed from the instant training time starts (fit begins); the machine is billed for init too.
    billed = None if elapsed is None or init is None else init + elapsed
    return {"target_rmse_px": target_rmse_px, "epochs_to_target": epoch, "time_to_target_s": elapsed,
            "cost_to_target_usd": billing.run_cost_usd(billed, usd_per_hour)}


def datasheet_mfu(images_per_s, training_flops_per_image, instance, gpu_model, gpus):
    """MFU of a published row: its throughput against the datasheet peak of its devices."""
    if not images_per_s or not training_flops_per_image:
        return None
    peak = peak_for(device_entry(gpu_model if gpus else f"{instance} CPU"), "float32")
    return mfu(images_per_s * training_flops_per_image / 1e9, peak * (int(gpus) if gpus else 1) if peak else None)


def original_rows(path, reference, catalogue_path=CATALOGUE):
    """The original study's published rows; its cost is (init + train) at the price it paid, and
    whether EC2 still offers its type is the catalogue's word."""
    status = {entry["instance_type"]: entry["status"] for entry in read_catalogue(catalogue_path)}
    frame = pd.read_csv(path)
    expected = {"instance", "vcpu", "gpu_model", "gpus", "workers", "network_gbps", "init_s", "train_s",
                "usd_per_hour", "status", "note"}
    missing = expected - set(frame.columns)
    if missing:
        raise KpbenchError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    rows = []
    for record in frame.to_dict("records"):
        record = {k: (None if pd.isna(v) else v) for k, v in record.items()}
        measured = record["status"] == "measured"
        seconds = record["init_s"] + record["train_s"] if measured else None
        images_per_s = reference["train_images"] * reference["epochs"] / record["train_s"] if measured else None
        rows.append({
            "source": SOURCE_ORIGINAL, "instance": record["instance"], "backend": "ec2",
            "status": record["status"], "ec2_catalogue": status.get(original_instance_type(record["instance"]), "n/a"),
            "vcpus": record["vcpu"], "gpu_model": record["gpu_model"], "gpus": record["gpus"],
            "workers": record["workers"], "network_gbps": record["network_gbps"],
            "epochs": reference["epochs"] if measured else None,
            "train_images": reference["train_images"] if measured else None,
            "batch_size": reference["batch_size"] if measured else None,
            "init_s": record["init_s"], "train_s": record["train_s"], "wall_s": seconds,
            "images_per_s": images_per_s, "usd_per_hour": record["usd_per_hour"],
            "mfu": datasheet_mfu(images_per_s, reference.get("training_flops_per_image"), record["instance"],
                                 record["gpu_model"], record["gpus"]),
            "precision": "float32" if measured else None,
            "price_date": reference.get("price_date"),
            "cost_usd": billing.run_cost_usd(seconds, record["usd_per_hour"]),
            "projected_train_s": record["train_s"],
            "projected_cost_usd": billing.run_cost_usd(seconds, record["usd_per_hour"]),
            "note": record["note"],
        })
    return rows


def summarise(run_paths, original_csv, reference, out_path, target_rmse_px=None, catalogue_path=CATALOGUE):
    """Write the summary: our runs in the order given (each with the history.csv beside its
    run.json), then the original study's rows."""
    rows = [run_row(read_run(path), reference, pd.read_csv(Path(path).parent / HISTORY_CSV), target_rmse_px)
            for path in run_paths]
    rows += original_rows(original_csv, reference, catalogue_path)
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    with atomic_path(out_path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    return frame


def _flag(group, column):
    """A yes/no column as booleans; an older summary without it says no."""
    if column not in group:
        return pd.Series(False, index=group.index)
    return group[column].map(lambda value: bool(value) if pd.notna(value) else False).astype(bool)


def chosen_runs(group):
    """MLPerf's rule, applied once per instance: its finished runs that had the machine to themselves
    (all of them if every one was contended), ordered by the metric MLPerf scores, the time to the
    quality target (a run that never reached it counts as slowest; ties, and instances none of whose
    runs reached it, by training time), the fastest and the slowest dropped when there are three or
    more. Every column of the instance is then averaged over these same runs, so a row never mixes runs."""
    done = group[(group["status"] == "measured") & group["train_s"].notna()]
    quiet = done[~_flag(done, "contended")]
    ordered = (quiet if len(quiet) else done).sort_values(["time_to_target_s", "train_s"], na_position="last")
    return ordered.iloc[1:-1] if len(ordered) >= 3 else ordered


def by_instance(summary):
    """One row per instance: our repeats averaged over `chosen_runs`, with `<column>_min` and
    `<column>_max` over all of its runs for the spread, `repeats` for how many ran and `averaged`
    for how many the means use; the original study's rows as published (one run each). Instances
    keep the summary's order."""
    rows = []
    for (source, _), group in summary.groupby(["source", "instance"], sort=False):
        row = group.iloc[0].to_dict()
        chosen = chosen_runs(group) if source == SOURCE_OURS else group
        row["repeats"], row["averaged"] = len(group), len(chosen)
        row["averaged_repeats"] = [int(r) for r in chosen["repeat"]] if source == SOURCE_OURS else []
        for column in REPEATED:
            present, everywhere = chosen[column].dropna(), group[column].dropna()
            row[column] = float(present.mean()) if len(present) else None
            row[f"{column}_min"] = float(everywhere.min()) if len(everywhere) else None
            row[f"{column}_max"] = float(everywhere.max()) if len(everywhere) else None
        row["reached_target"] = int(group["time_to_target_s"].notna().sum())
        contended_runs = int(_flag(group, "contended").sum())
        row["contended_runs"], row["all_contended"] = contended_runs, bool(len(group)) and contended_runs == len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def load_summary(path):
    """The summary table; a measurement column an older summary lacks reads as not measured."""
    path = Path(path)
    if not path.is_file():
        raise KpbenchError(f"{path}: summary not found; run the 'results' target first")
    frame = pd.read_csv(path)
    missing = [c for c in ("source", "instance", "status") if c not in frame.columns]
    if missing:
        raise KpbenchError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame.reindex(columns=list(dict.fromkeys([*frame.columns, *SUMMARY_COLUMNS])))
