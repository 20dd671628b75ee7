"""Run specs for tests, made as the pipeline makes them (kpbench.core.settings.run_spec and
launch_settings) from config/config.yaml with every schema default filled, so no test invents a
default of its own."""

import copy
import functools
from pathlib import Path

from kpbench.core import settings

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


@functools.cache
def _config():
    return settings.load_config([CONFIG])


def run_spec(profile="tiny", repeat=1, **sections):
    """The spec of the configured workload `profile`, repeat `repeat`, on the configured first
    instance row; each keyword (instance=, workload=, training=, data=) sets keys of that section."""
    config = {**copy.deepcopy(_config()), "workload": profile}
    spec = settings.run_spec(config, config["instances"][0]["name"], repeat)
    for section, values in sections.items():
        spec[section] = {**spec[section], **values}
    return spec


def run_inputs(instance, workload, training=None, limits=None, aws=None, repeat=1):
    """(spec, launch) as the workflow hands them to `kpbench train`: repeat `repeat` of one instance
    row under a workload {"name", ...settings}, over config/config.yaml with the given training,
    limits and aws settings, validated (defaults filled) as the workflow validates them."""
    config = copy.deepcopy(_config())
    name = workload["name"]
    config.update(instances=[copy.deepcopy(instance)], workload=name,
                  workloads={name: {k: v for k, v in workload.items() if k != "name"}})
    for section, overrides in (("training", training), ("limits", limits), ("aws", aws)):
        config[section].update(overrides or {})
    settings.validated(config, launching=False)
    return settings.run_spec(config, instance["name"], repeat), settings.launch_settings(config)
