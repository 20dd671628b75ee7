"""Run specs for tests, made as the pipeline makes them: from config/config.yaml with every schema
default filled by kpbench.settings, so no test invents a default of its own."""

import copy
import functools
from pathlib import Path

from kpbench.settings import load_config

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


@functools.cache
def _config():
    return load_config([CONFIG])


def run_spec(profile="tiny", repeat=1, **sections):
    """The spec of the configured workload `profile`, repeat `repeat`, on the configured first
    instance row; each keyword (instance=, workload=, training=, data=) sets keys of that section."""
    config = copy.deepcopy(_config())
    spec = {"instance": config["instances"][0],
            "workload": {"name": profile, **config["workloads"][profile]},
            "training": {**config["training"], "seed": config["training"]["seed"] + repeat - 1},
            "repeat": repeat,
            "data": {"source": config["data"]["source"], **config["preprocess"]}}
    for section, values in sections.items():
        spec[section] = {**spec[section], **values}
    return spec
