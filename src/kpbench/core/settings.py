"""The one path from configuration files to validated settings, for the Snakefile and every command.

Defaults live only in config/schema.yaml: validation fills them in, and code reads validated keys
without defaults of its own. What defines a measurement (`run_spec`, hashed into a run's
config_hash and a rerun trigger) is kept apart from how a run is launched (`launch_settings`: limits
and AWS plumbing, which never rerun a finished run).
"""

import copy
import json
from pathlib import Path

import yaml

from kpbench import REPO_ROOT, KpbenchError

SCHEMA = REPO_ROOT / "config" / "schema.yaml"


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
        try:
            merge(config, yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise KpbenchError(f"{path}: cannot read the configuration: {exc}") from None
    return config


def _filling_validator(schema):
    """A JSON-schema validator that fills each absent property with its default before descending
    into it (an object's default {} then gets its own properties' defaults), as Snakemake's
    `validate(..., set_default=True)` does; jsonschema alone, so GPU machines without Snakemake can
    load the configuration too."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, declared, instance, subschema):
        if isinstance(instance, dict):
            for key, child in declared.items():
                if "default" in child:
                    instance.setdefault(key, copy.deepcopy(child["default"]))
        yield from check_properties(validator, declared, instance, subschema)

    return jsonschema.validators.extend(base, {"properties": properties})(schema)


def validated(config, schema=SCHEMA, launching=True):
    """Check `config` against the schema (filling in its defaults, in place) and across fields;
    `launching=False` for commands that only plan (no bucket needed to price a campaign)."""
    from kpbench.backends import registry

    if "boot_overhead_s" in (config.get("aws") or {}):
        raise KpbenchError("configuration: aws.boot_overhead_s is no longer a setting: the plan prices boot, "
                           "set-up and init as kpbench predict does (kpbench.forecast.rental); remove it")
    rules = yaml.safe_load(Path(schema).read_text())
    # The backend names are the registry's: the schema says only that one is a string.
    rules["properties"]["instances"]["items"]["properties"]["backend"]["enum"] = list(registry.kinds())
    error = next(iter(sorted(_filling_validator(rules).iter_errors(config), key=lambda e: list(e.path))), None)
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise KpbenchError(f"configuration: {where}: {error.message}")
    check(config, launching)
    return config


def load_config(paths, schema=SCHEMA, launching=True):
    """Merged from `paths` (later files win), validated, with the schema's defaults filled in."""
    return validated(merged_config(paths), schema, launching)


def check(config, launching=True):
    """What the schema cannot say: names that must exist or be unique, settings one backend needs."""
    from kpbench.model.registry import MODEL_NAMES

    campaign = config.get("campaign")
    if campaign and not Path(campaign, "results").is_dir():
        raise KpbenchError(f"config: campaign {campaign}: no stored campaign there (no {campaign}/results); "
                           "the campaigns are folders of campaigns/")
    workload = config["workload"]
    if workload not in config["workloads"]:
        raise KpbenchError(f"config: workload '{workload}' is not one of {', '.join(config['workloads'])}")
    for name, profile in config["workloads"].items():
        if profile["model"] not in MODEL_NAMES:
            raise KpbenchError(f"config: workloads.{name}.model '{profile['model']}' is not one of "
                               f"{', '.join(MODEL_NAMES)}")
    names = [row["name"] for row in config["instances"]]
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise KpbenchError(f"config: instance names must be unique ({', '.join(duplicates)} repeated)")
    rented = [row for row in trained_instances(config) if _kind(row).rented]
    for row in rented:
        if not row.get("instance_type"):
            raise KpbenchError(f"config: instance {row['name']} (backend {row['backend']}) needs instance_type")
    _check_original_rows(config)
    _fill_machine_facts(config)
    _check_peak_devices(config)
    _price_stand_ins(config)
    on_aws = [row for row in rented if _kind(row).provider == "aws"]
    if launching and on_aws and not config["aws"]["bucket"]:
        raise KpbenchError(f"config: instance(s) {', '.join(row['name'] for row in on_aws)} run on EC2 and need "
                           "aws.bucket (an S3 bucket for code, data and results); see config/aws.yaml")


def _fill_machine_facts(config):
    """A rented row names its type; what the type is and costs comes from the catalogue, the one copy
    (a row that restates a fact differently is refused, so two copies cannot drift apart)."""
    from kpbench.core.catalogue import MACHINE_FACTS, machine_facts, priced_at, read_catalogue

    catalogue = priced_at(config.get("campaign"))
    rows = [row for row in config["instances"] if _kind(row).rented and row.get("instance_type")]
    by_type = {entry["instance_type"]: entry for entry in read_catalogue(catalogue)} if rows else {}
    for row in rows:
        if row["instance_type"] not in by_type:
            raise KpbenchError(f"config: instance {row['name']}: instance_type {row['instance_type']} is not in "
                               f"{catalogue}, which says what each type is and costs; add its row there")
        for key, value in machine_facts(by_type[row["instance_type"]]).items():
            if key in row and row[key] != value:
                raise KpbenchError(f"config: instance {row['name']}: {key} {row[key]!r} differs from {catalogue}'s "
                                   f"{value!r} for {row['instance_type']}: machine facts are the catalogue's "
                                   f"({', '.join(MACHINE_FACTS)}); drop it from the row or correct the catalogue")
            row[key] = value
    for row in config["instances"]:
        if "usd_per_hour" not in row or "price_date" not in row:
            raise KpbenchError(f"config: instance {row['name']} needs usd_per_hour and price_date (null where "
                               "unknown), or an instance_type of the catalogue")


def _price_stand_ins(config):
    """Local rows with `stand_in` take the price of the catalogue type that stands in for this machine
    (kpbench.machine.stand_in), described as every run describes it (kpbench.machine.description)."""
    rows = [row for row in config["instances"] if row.get("stand_in") and not _kind(row).rented]
    if not rows:
        return
    from kpbench.core.catalogue import priced_at
    from kpbench.machine.description import describe_cpu, read_sources
    from kpbench.machine.stand_in import stand_in_price

    cpu = describe_cpu(read_sources())
    for row in rows:
        vcpus = cpu["logical_cpus"] or int(row.get("vcpus") or 1)
        row["usd_per_hour"], row["price_date"], row["price_source"] = stand_in_price(row, cpu, vcpus,
                                                                                        priced_at(config.get("campaign")))


def _check_original_rows(config):
    """Each `measured_as` names a measured row of the original study's table, and
    `analysis.scaling_reference` a measured single-GPU row of it: a typo is refused, not dropped."""
    import csv

    path = config["original_study"]["csv"]
    try:
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["status"] == "measured"]
            single_gpu = [r["instance"] for r in rows if int(r["gpus"]) == 1 and int(r["workers"]) == 1]
    except (OSError, KeyError, ValueError) as exc:
        raise KpbenchError(f"config: original_study.csv {path} cannot be read ({exc!r})") from None
    measured = [r["instance"] for r in rows]
    for row in config["instances"]:
        if row.get("measured_as") and row["measured_as"] not in measured:
            raise KpbenchError(f"config: instance {row['name']}: measured_as '{row['measured_as']}' is not a "
                               f"measured row of {path} ({', '.join(measured)})")
    reference = config["analysis"]["scaling_reference"]
    if reference not in single_gpu:
        raise KpbenchError(f"config: analysis.scaling_reference '{reference}' is not a measured single-GPU row "
                           f"of {path} ({', '.join(single_gpu)})")


def _check_peak_devices(config):
    """A `peak_device` names a device of the peak table (kpbench.machine.device_peaks): a typo once
    surfaced only when the run, trained, looked it up."""
    from kpbench.machine.device_peaks import PEAKS

    for row in config["instances"]:
        if row.get("peak_device") and row["peak_device"] not in PEAKS:
            raise KpbenchError(f"config: instance {row['name']}: peak_device '{row['peak_device']}' is not a device "
                               f"of the peak table ({', '.join(sorted(PEAKS))})")


def _kind(row):
    from kpbench.backends import registry

    return registry.kind(row["backend"])


def retired(row):
    """A retired EC2 type stays in the matrix as the original study's record, but is never launched
    or priced."""
    return row.get("ec2_catalogue") == "retired"


def trained_instances(config):
    """The instance rows that run."""
    return [row for row in config["instances"] if not retired(row)]


def rented_instances(config):
    """The names of the trained rows whose machines a cloud rents (their runs only wait here)."""
    return [row["name"] for row in trained_instances(config) if _kind(row).rented]


def workload(config):
    """The configured workload profile, with its name."""
    return {"name": config["workload"], **config["workloads"][config["workload"]]}


def images_trained(profile, available, cap="max_train_images"):
    """The images a workload profile trains on (`cap="max_val_images"`: validates on): its cap where
    it sets one, never more than there are."""
    return min(int(profile.get(cap) or available), int(available))


def run_spec(config, instance, repeat):
    """Everything that defines one run's measurement: a change to it reruns that run (and only that
    one); each repeat trains with its own seed."""
    rows = {row["name"]: row for row in trained_instances(config)}
    spec = {
        "instance": rows[instance],
        "workload": workload(config),
        "training": {**config["training"], "seed": config["training"]["seed"] + int(repeat) - 1},
        "repeat": int(repeat),
        "data": {"source": config["data"]["source"], **config["preprocess"]},
    }
    return spec


def probe_spec(config, instance):
    """A probe's measurement (kpbench.forecast.probe): the instance's first run with the probe's
    epochs and steps; its caps are how it is launched, not what it measures."""
    probe = config["probe"]
    return {**run_spec(config, instance, 1),
            "probe": {key: probe[key] for key in ("epochs", "steps_per_epoch", "warmup_steps")}}


def probe_caps(config):
    """The configuration with a probe's time cap as every run's limit: the launcher's deadline and
    an EC2 instance's own lifetime (it ends itself), so a probe never runs past its cap, and
    `plan` charges a probe of unknown speed for its cap at most."""
    cap_s = float(config["probe"]["max_seconds"])
    return {**config, "limits": {**config["limits"], "deadline_s": min(cap_s, float(config["limits"]["deadline_s"]))},
            "aws": {**config["aws"], "max_lifetime_h": min(cap_s / 3600, float(config["aws"]["max_lifetime_h"]))}}


def launch_settings(config):
    """How runs are launched and watched: never part of a run's identity."""
    return {"limits": config["limits"], "aws": config["aws"]}


def as_json(value):
    return json.dumps(value, sort_keys=True)
