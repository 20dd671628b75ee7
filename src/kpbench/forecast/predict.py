"""Predict before you rent: time and cost of the configured workload on every machine of the dated
catalogue (config/catalogue.csv), validated by leave-one-out against every measured row.

The model (kpbench.forecast.perf_model, calibrated by kpbench.forecast.calibration), per training image:
  * every layer's forward and backward FLOPs and bytes moved (activations, weights, gradients),
    counted from the model's layer table (results/model.json), and the optimiser's update;
  * a roofline per layer: max(FLOPs / peak FLOP/s, bytes / memory bandwidth) against the device's
    datasheet (or derived) peak for the precision used (kpbench.machine.device_peaks);
  * one achieved-efficiency factor per device class (CPU, GPU by generation, and precision mode),
    calibrated as the geometric mean of ideal/measured time over the measured single-machine rows;
  * the host-side input pipeline as its own term (copying each batch, overlapped by prefetch);
  * several replicas add a ring all-reduce of the float32 gradients (kpbench.analysis.scaling) over the
    row's link at its guaranteed bandwidth, at the latency the cluster runs measured.

Each catalogue row is then priced as a whole rental (kpbench.forecast.rental): provision, boot, set-up,
init, the first epoch's excess, the steady epochs (each step at least the software's measured per-step
floor), the upload, billed as EC2 bills. The Pareto front is on end-to-end time and billed cost.

Validation holds each measured row out, calibrates on the rest and predicts it, then again with every
row of its device held out (a device nobody measured, as most catalogue machines'); the naive
baseline a user would otherwise use scales the other measured rows by the ratio of datasheet peak
FLOP/s.
"""

import csv
from pathlib import Path

from kpbench import KpbenchError
from kpbench.analysis.original_logs import distribution_check, read_runs
from kpbench.core import billing
from kpbench.core.catalogue import read_catalogue
from kpbench.core.files import read_json
from kpbench.core.layout import MEASURED_MODEL_FILE, RUN_DIR, RUN_JSON, SETUP_MEASURED, SOURCE_OURS
from kpbench.core.run_reader import run_model
from kpbench.core.settings import images_trained
from kpbench.core.version import code_label
from kpbench.forecast import rental, spot
from kpbench.forecast.calibration import SOFTWARE, TODAY, calibrate, leave_one_out, measured_rows
from kpbench.forecast.errors import band_for, bands, device_spread, error_summary
from kpbench.forecast.perf_model import device_kind, device_peaks, layer_costs, machine, predict_seconds, roofline
from kpbench.forecast.rental import fixed_terms, step_floor
from kpbench.forecast.target import epochs_range, epochs_reached, epochs_to_target
from kpbench.machine.device_peaks import device_entry, mfu_of_rate
from kpbench.model.registry import REFERENCE_MODEL


def predict_catalogue(catalogue, rows, results, layers, parameters, workload, precision, target_epochs, latency,
                      training_flops_per_image, setup, aws, sweeps=(), spot_prices=None, advisor=None):
    """Every catalogue row: predicted images/s, the steady training time with the band [t / f, t × f]
    from the leave-one-out errors (band_for), and the whole rental end to end and as EC2 bills it
    (kpbench.forecast.rental), for the workload and to the quality target, on demand and (where a spot
    price and an interruption band are known) as the expected spot rental (kpbench.forecast.spot).
    `target_epochs` maps a replica count to the epochs our runs with as many replicas needed: a machine
    of 8 GPUs trains a global batch 8 times as large, which converges in other epochs than one GPU's,
    so without runs of its count it has no time to the target.
    The Pareto front is on the rental's end-to-end time and billed cost, on demand."""
    fixed = fixed_terms(rows, TODAY)
    out = []
    for entry in catalogue:
        m = machine(entry["device"], entry["devices"], precision, entry["vcpus"],
                    link_gbps=entry["interconnect_gbps"] or entry["network_gbps"])
        epochs_to_target = target_epochs.get(m["replicas"])
        klass = device_peaks(m["entry"], 1, precision)[2]
        efficiency, level, _ = calibrate(rows, klass, TODAY, entry["device"])
        floor_s, floor_source = step_floor(rows, TODAY, device_kind(klass), sweeps)
        seconds, detail = predict_seconds(m, layers, workload, parameters, efficiency, latency, floor_s)
        band = band_for(results, detail["class"])
        per_epoch = seconds / workload["epochs"]
        priced = rental.rental(entry, workload, seconds, fixed, setup, aws)
        slow = rental.with_training(priced, seconds * band, workload, priced["usd_per_hour"])
        target = (rental.with_training(priced, per_epoch * epochs_to_target, workload, priced["usd_per_hour"])
                  if epochs_to_target else None)
        target_slow = (rental.with_training(priced, per_epoch * epochs_to_target * band, workload,
                                            priced["usd_per_hour"]) if epochs_to_target else None)
        images_per_s = workload["train_images"] * workload["epochs"] / seconds
        spot_side = spot.spot_row(entry, target or priced, spot_prices or {}, advisor or {}, aws, 1, per_epoch)
        peak_flops_s = device_peaks(m["entry"], m["per_replica"] * m["replicas"], precision)[0]
        out.append({
            "instance_type": entry["instance_type"], "status": entry["status"], "device": entry["device"],
            "devices": entry["devices"], "vcpus": entry["vcpus"], "class": detail["class"],
            "calibrated_from": level, "efficiency": efficiency, "host_bound": detail["host_bound"],
            "floor_s": floor_s, "floor_source": floor_source, "floor_bound": detail["floor_bound"],
            "predicted_step_s": seconds / workload["epochs"] / detail["steps"],
            "images_per_s": images_per_s, "mfu": mfu_of_rate(images_per_s, training_flops_per_image, peak_flops_s),
            "train_s": seconds, "train_s_low": seconds / band, "train_s_high": seconds * band, "band": band,
            "rental": priced, "rental_s": priced["wall_s"], "rental_s_low": priced["wall_s"] - seconds + seconds / band,
            "rental_s_high": slow["wall_s"], "fixed_s": priced["fixed_s"], "per_epoch_s": per_epoch,
            "dominant": priced["dominant"], "billed_s": priced["billed_s"],
            "usd_per_hour": entry["usd_per_hour"], "rental_usd_per_hour": priced["usd_per_hour"],
            "cost_usd": priced["cost_usd"], "cost_usd_high": slow["cost_usd"],
            "time_to_target_s": target["wall_s"] if target else None,
            "cost_to_target_usd": target["cost_usd"] if target else None,
            "cost_to_target_usd_high": target_slow["cost_usd"] if target_slow else None,
            "time_to_target_s_high": target_slow["wall_s"] if target_slow else None,
            "region": entry["region"], "price_date": entry["price_date"], "price_source": entry["price_source"],
            "spec_source": entry["spec_source"], "spec_date": entry["spec_date"],
            "spot": spot_side, "spot_usd_per_hour": spot_side.get("usd_per_hour"), "spot_band": spot_side.get("band"),
            "spot_usd": spot_side.get("usd"), "spot_cheaper": spot_side.get("cheaper")})
    current = [r for r in out if r["status"] == "current" and r["cost_usd"] is not None]
    for row in out:
        row["pareto"] = row in current and not any(  # times within 1 % tie: the cheaper of two such wins
            o["rental_s"] <= row["rental_s"] * 1.01 and o["cost_usd"] <= row["cost_usd"]
            and (o["rental_s"] < row["rental_s"] or o["cost_usd"] < row["cost_usd"]) for o in current)
    return out


def measured_row_provenance(path, run):
    """Where a measured row that is no run of these results came from, for the paper's provenance."""
    hardware = run.get("hardware") or {}
    cpu = (hardware.get("cpu") or {}).get("model_name") or hardware.get("cpu_model") or "unnamed CPU"
    software = run.get("software") or {}
    return {"path": str(path), "started": run.get("started_at"), "code": code_label(run),
            "device": ", ".join(hardware.get("gpu_names") or []) or cpu,
            "software": ", ".join(f"{name} {version}" for name, version in sorted(software.items())
                                  if name != "framework" and version),
            "framework": software.get("framework")}


def configured_workload(config):
    """The configured workload in the model's terms: its images capped at the original study's."""
    original = config["original_study"]
    workload = config["workloads"][config["workload"]]
    return {"name": config["workload"], "model": workload["model"], "epochs": int(workload["epochs"]), "batch_size": int(workload["batch_size"]),
            "train_images": images_trained(workload, original["train_images"]),
            "validation_images": images_trained(workload, original["validation_images"], cap="max_val_images")}


def _description(path, name):
    """A model description from its file where there is one, else made from the model (TensorFlow)."""
    if path is not None and Path(path).is_file():
        return read_json(path)
    from kpbench.model.registry import describe_model

    return describe_model(name)


def load_inputs(config, results_dir, model_path=None, summary_path=None, original_model_path=None):
    """The summary (the original study's rows alone where nothing has run yet), the model
    descriptions (the configured model's and the original study's, made from the models where
    results hold none) and our run.json paths; the results folder's unless paths are given."""
    from kpbench.analysis.aggregate import SUMMARY_COLUMNS, load_summary, original_rows

    results_dir = Path(results_dir) if results_dir else None  # None: price from nothing of ours
    name = config["workloads"][config["workload"]]["model"]

    def result_file(given, default):
        return Path(given) if given else (results_dir / default if results_dir else None)

    models = {name: _description(result_file(model_path, "model.json"), name)}
    if REFERENCE_MODEL not in models:
        models[REFERENCE_MODEL] = _description(result_file(original_model_path, "original_model.json"),
                                               REFERENCE_MODEL)
    original = config["original_study"]
    reference = {k: original[k] for k in ("epochs", "train_images", "validation_images", "batch_size")}
    summary_path = result_file(summary_path, "summary.csv")
    if summary_path and summary_path.is_file():
        summary = load_summary(summary_path)
        pattern = f"{RUN_DIR.format(instance='*', repeat='*')}/{RUN_JSON}"
        runs = sorted(str(p) for p in results_dir.glob(pattern)) if results_dir else []
    else:
        import pandas as pd

        summary = pd.DataFrame(original_rows(original["csv"], {**reference, "price_date": None}),
                               columns=SUMMARY_COLUMNS)
        runs = []
    return summary, models, reference, runs


def _measured_models(paths, runs):
    """The model descriptions beside runs measured elsewhere, by model name: each folder keeps the
    description of the model it trained, so that no model is rebuilt (nor TensorFlow needed) here."""
    found = {}
    for path, run in zip(paths, runs):
        description = Path(path).with_name(MEASURED_MODEL_FILE)
        if not description.is_file():
            raise KpbenchError(f"{path}: no {MEASURED_MODEL_FILE} beside it (kpbench describe-model --model "
                               f"{run_model(run)} --out {description})")
        model = read_json(description)
        if model.get("name") != run_model(run):
            raise KpbenchError(f"{description}: describes {model.get('name')!r}, but {path} trained {run_model(run)!r}")
        found[run_model(run)] = model
    return found


def _with_measured_models(models, paths, runs):
    """`models` and the descriptions kept beside runs measured elsewhere; a model described twice
    must be described alike (parameters and FLOPs), or the rows would be modelled inconsistently."""
    merged = dict(models)
    for path, run in zip(paths, runs):
        name = run_model(run)
        description = _measured_models([path], [run])[name]
        kept = merged.setdefault(name, description)
        facts = ("trainable_parameters", "training_flops_per_image")
        if [kept[k] for k in facts] != [description[k] for k in facts]:
            raise KpbenchError(f"{Path(path).with_name(MEASURED_MODEL_FILE)} describes {name} with "
                               f"{description['trainable_parameters']:,} parameters and "
                               f"{description['training_flops_per_image']:,} FLOPs per image; the model it is "
                               f"compared with has {kept['trainable_parameters']:,} and "
                               f"{kept['training_flops_per_image']:,}: describe it again with this code")
    return merged


def predictions(summary, models, run_paths, extra_run_paths, catalogue_path, workload, reference,
                precision="float32", original_logs=None, setup_path=SETUP_MEASURED, aws=None, sweep_paths=(),
                probe_paths=(), spot_prices_path=None, advisor_path=None):
    """Everything `kpbench predict`, `plan`, the figures and the paper show (forecast.json), for
    the workload's model; measured rows are modelled with the model each of them trained, the
    original study's as its logs show (`original_logs`: config/original_study_runs.json). A rental
    is priced with the measured set-up (`setup_path`) and the aws settings' volume and address
    prices (`aws`; none: the instance alone); a GPU's per-step floor comes from floor-bound rows,
    else from the batch sweeps (`sweep_paths`, bench/batch_sweep.py); probes (`probe_paths`, their
    run.json) are measured rows of their devices; spot rentals are priced from `spot_prices_path` and
    `advisor_path` (kpbench.forecast.spot), where given."""
    from kpbench.analysis.aggregate import by_instance
    from kpbench.core.run_reader import read_run

    models = {key: {**description, "name": key} for key, description in models.items()}  # older files: other names
    model = models[workload["model"]]
    layers, parameters = model["layers"], model["trainable_parameters"]
    runs = [read_run(p) for p in run_paths]
    extra_runs = [read_run(p) for p in extra_run_paths]
    models = _with_measured_models(models, extra_run_paths, extra_runs)
    machines = read_catalogue(catalogue_path)
    baseline_gbps = {entry["instance_type"]: entry["network_gbps"] for entry in machines if entry["network_gbps"]}
    logged = read_runs(original_logs) if original_logs and Path(original_logs).is_file() else {}
    rows, latency = measured_rows(by_instance(summary), runs, extra_runs, models, reference, baseline_gbps, logged,
                                  [read_run(p) for p in probe_paths])
    sweeps = [rental.read_sweep(path, SOFTWARE) for path in sweep_paths]
    results = leave_one_out(rows, models, reference, latency, sweeps)
    ours = summary[summary["source"] == SOURCE_OURS]  # the worker counts we ran: a key means a run of ours
    target_epochs = {workers: epochs_to_target(summary, workers) for workers in sorted({1, *ours["workers"].dropna().astype(int)})}
    setup = rental.read_setup(setup_path)
    catalogue = predict_catalogue(machines, rows, results, layers, parameters, workload,
                                  precision, target_epochs, latency, model["training_flops_per_image"], setup,
                                  aws or {}, sweeps,
                                  spot.read_prices(spot_prices_path) if spot_prices_path else None,
                                  spot.read_advisor(advisor_path) if advisor_path else None)
    sizes = [2 ** k / 8 for k in range(0, 15)]  # 1/8 to 2,048 times the workload's epochs
    cheapest, changes = rental.crossovers(catalogue, workload, sizes)
    rooflines = {}
    for device, count in (("AMD EPYC Zen 4 vCPU", 2), ("Tesla T4", 1)):
        flops_s, bytes_s, _ = device_peaks(device_entry(device), count, "float32")
        rooflines[device] = {"devices": count, "flops_s": flops_s, "bytes_s": bytes_s,
                             "layers": roofline(layer_costs(layers, int(workload["batch_size"])), flops_s, bytes_s)}
    return {"workload": workload, "reference": reference, "precision": precision, "software": TODAY,
            "device_spread": {klass: spread for klass in sorted({r["class"] for r in results})
                              if (spread := device_spread(results, klass)) is not None},
            "epochs_to_target": target_epochs[1], "epochs_to_target_runs": len(epochs_reached(summary)),
            "epochs_to_target_by_replicas": target_epochs, "epochs_to_target_range": epochs_range(summary),
            "bands": bands(results),
            "latency_s": latency, "validation": results,
            "errors": error_summary(results), "catalogue": catalogue, "rooflines": rooflines,
            "setup": setup, "cheapest_by_size": cheapest, "crossovers": changes,
            "extras_usd_per_hour": billing.machine_extras_usd_per_hour(aws or {}),
            "other_floors": rental.below_other_floors(catalogue, rows, TODAY),
            "catalogue_path": str(catalogue_path),
            "spot_inputs": {"prices": str(spot_prices_path) if spot_prices_path else None,
                            "advisor": str(advisor_path) if advisor_path else None},
            "measured_extra": [str(p) for p in extra_run_paths],
            "measured_extra_rows": [measured_row_provenance(path, run) for path, run in zip(extra_run_paths, extra_runs)],
            "original_logs": str(original_logs) if logged else None,
            "distribution": distribution_check(logged, baseline_gbps, latency)}


def cost_key(result):
    """The cost a choice of machine compares: to the quality target where our runs reached it, else the
    workload's whole bill."""
    return "cost_to_target_usd" if result["epochs_to_target"] is not None else "cost_usd"


def ranked(catalogue, key):
    """Current rows ranked by `key` (rows without it last), for `kpbench predict`."""
    return sorted((r for r in catalogue if r["status"] == "current"),
                  key=lambda r: (r[key] is None, r[key] or 0.0))


def write_csv(catalogue, path):
    from kpbench.core.files import atomic_path

    # One line per machine: the rental's terms, one level down, stay in forecast.json.
    columns = [key for key, value in catalogue[0].items() if not isinstance(value, (dict, list))]
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(catalogue)
