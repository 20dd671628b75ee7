"""Stored campaigns: finished results plus the configuration that made them, so a reviewer can
rebuild every figure and the paper without data, credentials or accelerators (reviewer mode)."""

import json
import shutil
from pathlib import Path

import yaml

from kpbench import KpbenchError
from kpbench.core.catalogue import (
    CAMPAIGN_CATALOGUE,
    CAMPAIGN_SPOT_ADVISOR,
    CAMPAIGN_SPOT_PRICES,
    CAMPAIGN_SPOT_SNAPSHOT,
    SPOT_ADVISOR,
    SPOT_PRICES,
    priced_at,
    spot_prices_at,
)
from kpbench.core.files import atomic_path
from kpbench.core.layout import PROBE_DIR, RUN_DIR, RUN_FILES, RUN_JSON, SOURCE_OURS, SPOT_SNAPSHOT
from kpbench.core.settings import load_config, run_spec, trained_instances

# What the figures and the paper read; data/ and training checkpoints are deliberately left out.
CAMPAIGN_FILES = ("summary.csv", "model.json", "dataset/stats.json", "dataset/samples.npz")
# Kept where the results have them: forward fill and precision (absent before they were measured), the
# original study's model description (made only where ours trained another model).
OPTIONAL_FILES = ("forward_fill.json", "precision.json", "original_model.json")


def store_campaign(results, config_paths, out):
    """Copy the results of every configured instance and the configuration into `out`, whole or not
    at all; the copied config.yaml points `campaign` at `out`, which turns on reviewer mode."""
    results, out = Path(results), Path(out)
    config = load_config(config_paths, launching=False)
    config = {**config, "repeats": repeats_held(config, results)}
    wanted = list(CAMPAIGN_FILES) + [f"{RUN_DIR.format(instance=row['name'], repeat=repeat)}/{name}" for row in trained_instances(config)
                                     for repeat in range(1, config["repeats"] + 1)
                                     for name in RUN_FILES]
    missing = [name for name in wanted if not (results / name).is_file()]
    if missing:
        raise KpbenchError(f"{results}: not a finished campaign, missing {', '.join(missing)}")
    config = described_by_runs(config, results)
    check_summary(config, results)
    if out.exists():
        raise KpbenchError(f"{out} exists already; campaigns are never overwritten")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # Each instance's probe where it was made (rules/probe.smk), whole: all of its run's files.
        probes = [[f"{PROBE_DIR.format(instance=row['name'])}/{name}" for name in RUN_FILES]
                  for row in trained_instances(config)]
        probes = [name for files in probes if all((results / f).is_file() for f in files) for name in files]
        for name in wanted + [name for name in OPTIONAL_FILES if (results / name).is_file()] + probes:
            target = staging / "results" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results / name, target)
        # The prices it was priced at travel with it (kpbench.core.catalogue.priced_at): the catalogue,
        # the plan's spot snapshot or else the dated default spot prices, and the interruption bands.
        shutil.copyfile(priced_at(config.get("campaign")), staging / CAMPAIGN_CATALOGUE)
        spot_prices = spot_prices_at(config.get("campaign"), results / SPOT_SNAPSHOT
                                     if (results / SPOT_SNAPSHOT).is_file() else None, SPOT_PRICES)
        shutil.copyfile(spot_prices, staging / (CAMPAIGN_SPOT_SNAPSHOT if spot_prices.suffix == ".json" else CAMPAIGN_SPOT_PRICES))
        shutil.copyfile(priced_at(config.get("campaign"), SPOT_ADVISOR, CAMPAIGN_SPOT_ADVISOR),
                        staging / CAMPAIGN_SPOT_ADVISOR)
        config["campaign"] = out.as_posix()
        with atomic_path(staging / "config.yaml") as tmp:
            tmp.write_text("# A stored campaign: `snakemake --cores 1 paper --configfile "
                           f"{out.as_posix()}/config.yaml` rebuilds its paper.\n"
                           + yaml.safe_dump(config, sort_keys=False))
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def repeats_held(config, results):
    """The repeats every configured instance finished in `results` (r1, r2, … without a gap): a
    campaign stores what was run, whatever repeats the configuration it is stored with asks for."""
    held = []
    for row in trained_instances(config):
        repeat = 0
        while (results / RUN_DIR.format(instance=row["name"], repeat=repeat + 1) / RUN_JSON).is_file():
            repeat += 1
        held.append(repeat)
    return max(min(held, default=0), 1)  # none finished: the missing r1 is named by the caller


def check_summary(config, results):
    """The summary a campaign's paper is made from must list exactly the runs the campaign holds."""
    import pandas as pd

    summary = pd.read_csv(results / "summary.csv")
    listed = {(row["instance"], int(row["repeat"])) for row in summary.to_dict("records")
              if row["source"] == SOURCE_OURS}
    stored = {(row["name"], repeat) for row in trained_instances(config) for repeat in range(1, config["repeats"] + 1)}
    if listed != stored:
        def named(pairs):
            return ", ".join(f"{instance} r{repeat}" for instance, repeat in sorted(pairs)) or "none"
        raise KpbenchError(f"{results / 'summary.csv'}: lists runs {named(listed - stored)} that the campaign would "
                           f"not hold and lacks {named(stored - listed)}; store it with the --configfile the runs "
                           "were made with, after `snakemake results` has summarised them")


# The parts of a workload profile a run records as they were asked for (`epochs`: as requested).
WORKLOAD_KEYS = {"model": "model", "batch_size": "batch_size", "max_train_images": "max_train_images",
                 "max_val_images": "max_val_images", "epochs": "epochs_requested"}
# What makes an instance row the machine it is (its price may be re-dated, a stand-in re-priced).
MACHINE_KEYS = ("backend", "instance_type", "workers", "gpus", "gpu_model", "vcpus", "spot")


def described_by_runs(config, results):
    """`config` with the workload the runs in `results` trained (a campaign must say what it holds:
    tiny runs stored under the default configuration would print the default's batch and epochs),
    checked run by run against the workload profile, training settings and machine each recorded."""
    runs = {}
    for row in trained_instances(config):
        for repeat in range(1, config["repeats"] + 1):
            folder = results / RUN_DIR.format(instance=row["name"], repeat=repeat)
            try:
                runs[folder / RUN_JSON] = (row["name"], repeat, json.loads((folder / RUN_JSON).read_text()))
            except (OSError, ValueError) as error:
                raise KpbenchError(f"{folder / RUN_JSON}: not a readable run record ({error})") from None
    names = sorted({run["workload"].get("name") for _, _, run in runs.values()}, key=str)
    if len(names) != 1 or names[0] not in config["workloads"]:
        raise KpbenchError(f"{results}: its runs trained workload(s) {', '.join(map(str, names))}; a campaign "
                           f"holds one of the configuration's ({', '.join(config['workloads'])})")
    config = {**config, "workload": names[0]}
    for path, (instance, repeat, run) in runs.items():
        spec = run_spec(config, instance, repeat)
        # Older records lack some keys (no `epochs_requested`, no `model`): what one lacks is not compared.
        recorded = {"workload": {key: run["workload"][field] for key, field in WORKLOAD_KEYS.items()
                                 if field in run["workload"]},
                    "training": run["training"],
                    "instance": {key: run["instance"][key] for key in MACHINE_KEYS if key in run["instance"]}}
        expected = {"workload": {key: spec["workload"].get(key) for key in WORKLOAD_KEYS},
                    "training": spec["training"],
                    "instance": {key: spec["instance"].get(key) for key in MACHINE_KEYS}}
        for part, values in recorded.items():
            differing = sorted(key for key in values.keys() & expected[part].keys()
                               if values[key] != expected[part][key])
            if differing:
                key = differing[0]
                raise KpbenchError(
                    f"{path}: made with {part}.{key} = {values[key]!r}, the configuration says "
                    f"{expected[part][key]!r} ({', '.join(differing)} differ); store the campaign with the "
                    "--configfile the runs were made with")
    return config
