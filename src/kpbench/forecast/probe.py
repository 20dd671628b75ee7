"""Probe before you rent: a capped short run on a candidate machine (a run whose spec has "probe":
kpbench.core.settings.probe_spec), extrapolated to the configured workload with the rental model
(kpbench.forecast.rental), with a band from the probe's own step spread.

A probe trains `epochs` equal short epochs, each validated. From them (kpbench.train.run records
every step):
  * steady step: the median of the steps after the first `warmup_steps` (tracing, compilation), with
    its 10th and 90th percentiles;
  * per epoch besides its steps: validation and the rest (epoch start and end, callbacks), from the
    epochs after the first;
  * the first epoch's excess over a later one (the epochs are equally long): what tracing costs once;
  * what fit takes besides its epochs (its set-up and end), once a call;
  * init (process start → compiled model) and a cluster's self-profile, as the probe measured them.
Extrapolated training (fit's wall time, as a run measures it) = fit's own + excess + epochs × (steps
per real epoch × step + validation + rest); the rental adds provision, boot and set-up as the rental model
does, for the machine the probe ran on.
"""

import statistics

import numpy as np

from kpbench import KpbenchError
from kpbench.backends import registry
from kpbench.forecast import rental
from kpbench.forecast.predict import cost_key, ranked
from kpbench.forecast.target import epochs_to_target


def probe_facts(run):
    """What a probe measured, from its run.json: steady step (median, p10, p90), validation and the
    rest per epoch, the first epoch's excess, init; refuses a run that is no probe."""
    probe = run.get("probe")
    name = run["instance"]["name"]
    if not probe:
        raise KpbenchError(f"the run of {name} is no probe (its run.json has no 'probe')")
    steps, per_epoch, warmup = probe["step_s"], int(probe["steps_per_epoch"]), int(probe["warmup_steps"])
    epochs = run["timings"]["epoch_s"]
    if len(epochs) < 2 or len(steps) != per_epoch * len(epochs) or len(steps) <= warmup:
        raise KpbenchError(f"the probe of {name} timed {len(steps)} steps over {len(epochs)} epoch(s) of "
                           f"{per_epoch}: it needs two or more whole epochs and steps past its {warmup} warm-up")
    steady = steps[warmup:]
    validation = run["timings"]["validation_s"]
    later = range(1, len(epochs))
    rest = [epochs[k] - sum(steps[k * per_epoch:(k + 1) * per_epoch]) - validation[k] for k in later]
    timings = run["timings"]
    return {"steps_timed": len(steps), "epochs_timed": len(epochs), "steady_steps": len(steady),
            "step_s": statistics.median(steady), "step_p10_s": float(np.percentile(steady, 10)),
            "step_p90_s": float(np.percentile(steady, 90)),
            "validation_s": statistics.median(validation[k] for k in later),
            "rest_s": max(statistics.median(rest), 0.0),
            "first_epoch_excess_s": max(epochs[0] - statistics.median(epochs[k] for k in later), 0.0),
            "fit_s": max(timings["train_s"] - sum(epochs), 0.0),
            "init_s": timings["init_s"] + (timings.get("profiling_s") or 0.0),
            "probe_wall_s": timings["wall_s"], "full_steps_per_epoch": int(probe["full_steps_per_epoch"])}


def training_s(facts, epochs, step_s):
    """fit's wall time for `epochs` real epochs at `step_s` a step, its own set-up and the first epoch's
    excess included."""
    per_epoch = facts["full_steps_per_epoch"] * step_s + facts["validation_s"] + facts["rest_s"]
    return facts["fit_s"] + facts["first_epoch_excess_s"] + epochs * per_epoch


def extrapolate(run, setup, aws, epochs_to_target=None):
    """A probe extrapolated to its workload (the run's requested epochs, a real epoch's steps) and, where
    runs of the same workload and global batch reached it, to the quality target: training and the
    run (init + training) with the band from p10 and p90 of the probe's steps, and the rental as EC2
    would bill it on the machine probed."""
    facts = probe_facts(run)
    workload, instance = run["workload"], run["instance"]
    epochs = int(workload["epochs_requested"])
    train = {key: training_s(facts, epochs, facts[step]) for key, step in
             (("train_s", "step_s"), ("train_s_low", "step_p10_s"), ("train_s_high", "step_p90_s"))}
    full_workload = {"epochs": epochs, "validation_images": int(workload["validation_images"]),
                     "train_images": facts["full_steps_per_epoch"] * int(run["cluster"]["global_batch"])}
    entry = {"instance_type": instance.get("instance_type") or instance["name"],
             "network_gbps": instance.get("network_gbps"), "usd_per_hour": instance.get("usd_per_hour")}
    fixed = {"init_s": {"s": facts["init_s"], "source": "this probe"},
             "first_epoch_excess_s": {"s": facts["first_epoch_excess_s"], "source": "this probe"}}
    machines = registry.kind(instance["backend"]).machines(instance)
    priced = rental.rental(entry, full_workload, train["train_s"] - facts["first_epoch_excess_s"], fixed, setup,
                           aws, machines, training_source="this probe's steady steps, validation and epoch rest")
    target = None
    if epochs_to_target:
        target_s = training_s(facts, epochs_to_target, facts["step_s"]) - facts["first_epoch_excess_s"]
        target = rental.with_training(priced, target_s, full_workload, priced["usd_per_hour"])
    return {"instance": instance["name"], "backend": instance.get("backend"), "facts": facts, "epochs": epochs,
            **train, "run_s": facts["init_s"] + train["train_s"],
            "run_s_low": facts["init_s"] + train["train_s_low"], "run_s_high": facts["init_s"] + train["train_s_high"],
            "rental": priced, "epochs_to_target": epochs_to_target,
            "time_to_target_s": target["wall_s"] if target else None,
            "cost_to_target_usd": target["cost_usd"] if target else None,
            "probe_cost_usd": run["cost"]["usd"], "probe_s": facts["probe_wall_s"]}


def probe_workload(workload, probe_config, workers=1):
    """The workload a probe trains, as `plan` prices it: its epochs of at most its steps each."""
    images = int(probe_config["steps_per_epoch"]) * int(workload["batch_size"]) * workers
    return {**workload, "epochs": int(probe_config["epochs"]),
            "max_train_images": min(images, int(workload.get("max_train_images") or images))}


def check_probe_plan(planned, probe_config):
    """Refuse, before anything launches, a probe `plan` (kpbench.forecast.plan over probe_workload,
    with kpbench.core.settings.probe_caps: one of unknown speed charged its time cap) prices over
    probe.max_usd, or probes that together bill more than probe.max_total_usd."""
    for row in planned["rows"]:
        if row.get("usd") is not None and row["usd"] > probe_config["max_usd"]:
            raise KpbenchError(f"the probe of {row['instance']} is priced at {row['usd']:.2f} USD, over probe.max_usd "
                               f"({probe_config['max_usd']:g} USD); nothing was launched")
    if planned["total_usd"] > probe_config["max_total_usd"]:
        raise KpbenchError(f"the probes are priced at {planned['total_usd']:.2f} USD together, over "
                           f"probe.max_total_usd ({probe_config['max_total_usd']:g} USD); nothing was launched")
    return planned


def validated(probe, full_runs):
    """A probe's extrapolation against the full runs of its instance and workload: training (fit's
    wall time) and the run (init and training), the errors of the median run, and what the probe
    cost in time as a share of that run."""
    if not full_runs:
        return None
    measured_train = statistics.median(r["timings"]["train_s"] for r in full_runs)
    measured_run = statistics.median(r["timings"]["init_s"] + (r["timings"].get("profiling_s") or 0.0)
                                     + r["timings"]["train_s"] for r in full_runs)
    return {"instance": probe["instance"], "full_runs": len(full_runs),
            "measured_train_s": measured_train, "extrapolated_train_s": probe["train_s"],
            "train_error": probe["train_s"] / measured_train - 1,
            "within_band": probe["train_s_low"] <= measured_train <= probe["train_s_high"],
            "measured_run_s": measured_run, "extrapolated_run_s": probe["run_s"],
            "run_error": probe["run_s"] / measured_run - 1,
            "probe_s": probe["probe_s"], "probe_share": probe["probe_s"] / measured_run}


def _comparable(run):
    """What a full run and a probe of it share: the instance, the workload asked for, and the
    training settings but the seed (each repeat has its own)."""
    workload = run["workload"]
    return (run["instance"]["name"], workload["epochs_requested"], workload["batch_size"],
            workload.get("max_train_images"), workload.get("model"),
            sorted((k, str(v)) for k, v in run["training"].items() if k != "seed"))


def probe_report(probe_runs, full_runs, summary, setup, aws):
    """Every probe extrapolated, and validated against the full runs of the same instance, workload
    and training settings (`full_runs`: run.json records; others are not compared)."""
    probes, validation = [], []
    for run in probe_runs:
        target = None if summary is None else epochs_to_target(summary, int(run["cluster"]["workers"]))
        probe = extrapolate(run, setup, aws, target)
        probes.append(probe)
        check = validated(probe, [r for r in full_runs if _comparable(r) == _comparable(run)])
        if check:
            validation.append(check)
    return {"probes": probes, "validation": validation}


PROBE_COLUMNS = ("instance", "backend", "steady_steps", "step_s", "step_p10_s", "step_p90_s", "train_s", "train_s_low",
                 "train_s_high", "run_s", "rental_s", "cost_usd", "time_to_target_s", "cost_to_target_usd", "probe_s",
                 "probe_cost_usd", "measured_train_s", "train_error", "run_error", "probe_share")


def write_probe_csv(report, path):
    """One row per probe: its steps, extrapolation, rental and, where a full run was made, its errors."""
    import csv

    checks = {c["instance"]: c for c in report["validation"]}
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PROBE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for probe in report["probes"]:
            row = {**probe["facts"], **probe, **checks.get(probe["instance"], {}),
                   "rental_s": probe["rental"]["wall_s"], "cost_usd": probe["rental"]["cost_usd"]}
            writer.writerow({key: (f"{row[key]:.6g}" if isinstance(row.get(key), float) else row.get(key))
                             for key in PROBE_COLUMNS})


def candidates(result, count):
    """The `count` current catalogue machines a user would probe first, as configuration rows: the
    least predicted billed cost to the quality target (of the workload where no run reached it yet),
    each an EC2 row of its type (kpbench.core.settings reads its facts from the catalogue)."""
    key = cost_key(result)
    rows = [r for r in ranked(result["catalogue"], key) if r[key] is not None][:count]
    what = "cost to the quality target" if key == "cost_to_target_usd" else "billed cost of the workload"
    return [{"name": f"probe-{r['instance_type']}", "backend": "ec2", "instance_type": r["instance_type"], "workers": 1,
             "note": f"probe candidate: predicted {what} {r[key]:.4f} USD"} for r in rows]
