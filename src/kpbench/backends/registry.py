"""Backends by name, as PerfKitBenchmarker registers its providers: a launcher class declares the
backend names it runs (`@register`), and settings, billing, analysis and the workflow ask here what a
name means: how many workers it launches, and whether its machines are rented (and from whom).

A new provider is a module that registers its launcher, named once in PROVIDERS. Importing a provider
loads no cloud SDK (each imports boto3 or its like inside the calls that talk to the cloud), so the
paper and the Snakefile can ask the registry freely.
"""

import importlib
from dataclasses import dataclass

from kpbench import KpbenchError

# The modules whose launchers register themselves on import.
PROVIDERS = ("kpbench.backends.local", "kpbench.backends.aws.ec2")

_KINDS = {}


@dataclass(frozen=True)
class BackendKind:
    name: str
    launcher: type
    cluster: bool  # several workers under MultiWorkerMirroredStrategy

    @property
    def provider(self):
        """The cloud that rents and bills the machines (its settings' section name); None: this machine."""
        return self.launcher.provider

    @property
    def rented(self):
        return self.provider is not None

    def workers(self, instance):
        """Worker processes a run of `instance` launches."""
        return int(instance["workers"]) if self.cluster else 1

    def machines(self, instance):
        """Machines a run occupies: loopback workers share this one; each rented worker has its own."""
        return self.workers(instance) if self.rented else 1


def register(name, *, cluster):
    """Class decorator: `launcher` runs backend `name`."""
    def add(launcher):
        if name in _KINDS and _KINDS[name].launcher is not launcher:
            raise KpbenchError(f"backend {name!r} is registered twice")
        _KINDS[name] = BackendKind(name, launcher, cluster)
        return launcher
    return add


def kinds():
    """Every registered backend, by name."""
    for module in PROVIDERS:
        importlib.import_module(module)
    return dict(sorted(_KINDS.items()))


def kind(name):
    known = kinds()
    if name not in known:
        raise KpbenchError(f"unknown backend {name!r}: one of {', '.join(known)}")
    return known[name]


def single_worker(name):
    """The one-worker backend of the same launcher (a cluster's scaling baseline), or None."""
    launcher = kind(name).launcher
    return next((other.name for other in kinds().values() if other.launcher is launcher and not other.cluster), None)
