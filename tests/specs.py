"""Run specs for tests, made as the pipeline makes them (kpbench.settings.run_spec) from
config/config.yaml with every schema default filled, so no test invents a default of its own."""

import copy
import functools
from pathlib import Path

from kpbench import settings

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
