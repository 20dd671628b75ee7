"""A run's spec and launch settings as the workflow hands them to `kpbench train`: what defines the
measurement, and how it is launched, every schema default filled in (kpbench.settings)."""

import copy
import functools

from workflow import REPO


@functools.lru_cache(maxsize=1)
def _config():
    from kpbench.settings import load_config

    return load_config([REPO / "config" / "config.yaml"])


def run_inputs(instance, workload, training=None, limits=None, aws=None, repeat=1):
    """(spec, launch) for repeat `repeat` of one instance row under a workload {"name", ...settings},
    over config/config.yaml with the given training, limits and aws settings."""
    from snakemake.utils import validate

    from kpbench.settings import SCHEMA

    config = copy.deepcopy(_config())
    name, settings = workload["name"], {k: v for k, v in workload.items() if k != "name"}
    config.update(instances=[instance], workload=name, workloads={name: settings})
    for section, overrides in (("training", training), ("limits", limits), ("aws", aws)):
        config[section].update(overrides or {})
    validate(config, str(SCHEMA), set_default=True)
    training = {**config["training"], "seed": config["training"]["seed"] + repeat - 1}
    spec = {"instance": config["instances"][0], "workload": {"name": name, **config["workloads"][name]},
            "training": training, "repeat": repeat,
            "data": {"source": config["data"]["source"], **config["preprocess"]}}
    return spec, {"limits": config["limits"], "aws": config["aws"]}
