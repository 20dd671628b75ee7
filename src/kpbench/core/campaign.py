"""Stored campaigns: finished results plus the configuration that made them, so a reviewer can
rebuild every figure and the paper without data, credentials or accelerators (reviewer mode)."""

import shutil
from pathlib import Path

import yaml

from kpbench import KpbenchError
from kpbench.core.files import atomic_path
from kpbench.core.layout import RUN_DIR, RUN_FILES
from kpbench.core.settings import load_config, trained_instances

# What the figures and the paper read; data/ and training checkpoints are deliberately left out.
CAMPAIGN_FILES = ("summary.csv", "model.json", "dataset/stats.json", "dataset/samples.npz")
# Kept where the results have them: forward fill (absent before it was measured), the original
# study's model description (made only where ours trained another model).
OPTIONAL_FILES = ("forward_fill.json", "original_model.json")


def store_campaign(results, config_paths, out):
    """Copy the results of every configured instance and the configuration into `out`, whole or not
    at all; the copied config.yaml points `campaign` at `out`, which turns on reviewer mode."""
    results, out = Path(results), Path(out)
    config = load_config(config_paths, launching=False)
    wanted = list(CAMPAIGN_FILES) + [f"{RUN_DIR.format(instance=row['name'], repeat=repeat)}/{name}" for row in trained_instances(config)
                                     for repeat in range(1, config["repeats"] + 1)
                                     for name in RUN_FILES]
    missing = [name for name in wanted if not (results / name).is_file()]
    if missing:
        raise KpbenchError(f"{results}: not a finished campaign, missing {', '.join(missing)}")
    if out.exists():
        raise KpbenchError(f"{out} exists already; campaigns are never overwritten")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for name in wanted + [name for name in OPTIONAL_FILES if (results / name).is_file()]:
            target = staging / "results" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results / name, target)
        config["campaign"] = out.as_posix()
        with atomic_path(staging / "config.yaml") as tmp:
            tmp.write_text("# A stored campaign: `snakemake --cores 1 paper --configfile "
                           f"{out.as_posix()}/config.yaml` rebuilds its paper.\n"
                           + yaml.safe_dump(config, sort_keys=False))
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
