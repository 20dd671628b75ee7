"""The configuration outside Snakemake (`kpbench plan`, `cleanup`, `store-campaign`): the same files,
merged and validated as the workflow does, so every command sees the configuration it would."""

from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


def merged_config(paths):
    """The configuration as Snakemake sees it: later files override earlier ones, key by key."""
    def merge(base, overlay):
        for key, value in overlay.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    config = {}
    for path in paths:
        merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return config


def load_config(paths, schema=SCHEMA):
    """Merged, validated against config/schema.yaml, and with the schema's defaults filled in."""
    from snakemake.utils import validate

    config = merged_config(paths)
    validate(config, str(schema), set_default=True)
    return config


def trained_instances(config):
    """The instance rows that run: retired EC2 types stay in the matrix as the original study's
    record, but are never launched."""
    return [row for row in config["instances"] if row.get("ec2_catalogue") != "retired"]
