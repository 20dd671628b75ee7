"""Run one instance's training through its backend: launch, wait, collect, and teardown whatever
happens (in `finally`), also when Snakemake or the user stops the job.

Backends are named in kpbench.layout.BACKENDS; `LAUNCHERS` is the one place that says which class
runs each: local processes, or EC2 instances watched from here.
"""

import signal
import threading

from kpbench import KpbenchError
from kpbench.backend_base import say
from kpbench.ec2_backend import Ec2Instances
from kpbench.guard import RunLock
from kpbench.version import code_version
from kpbench.layout import BACKENDS
from kpbench.local_backend import LocalProcesses

LAUNCHERS = {name: Ec2Instances if backend.remote else LocalProcesses for name, backend in BACKENDS.items()}


def make_backend(spec, launch, dataset, out_dir):
    """The backend of the spec's instance row: a single machine, or `workers` of them for a cluster."""
    instance = spec["instance"]
    if instance["backend"] not in BACKENDS:
        raise KpbenchError(f"instance {instance['name']}: unknown backend {instance['backend']!r}")
    workers = int(instance["workers"]) if BACKENDS[instance["backend"]].cluster else 1
    return LAUNCHERS[instance["backend"]](spec, launch, dataset, out_dir, workers)


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _during_teardown(signum, frame):
    say(f"signal {signum} during teardown: ignored until every machine is torn down")


def run_instance(spec, launch, dataset, out_dir):
    """Launch, wait and collect one instance's run; tear everything down whatever happens (SIGTERM
    and Ctrl-C both reach the teardown, and a second one during the teardown cannot cut it short).

    `spec` is what defines the measurement (instance, workload, training, repeat, data); `launch`
    how it is launched ({"limits": ..., "aws": ...}), both with the schema's defaults filled in.
    """
    backend = make_backend(spec, launch, dataset, out_dir)
    backend.code = code_version()  # the code that launches it, read before an edit could change it
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with RunLock(out_dir):  # one launcher per run folder: its checkpoint has one writer
            try:
                backend.launch()
                backend.wait()
                return backend.collect()
            finally:
                if in_main_thread:
                    for signum in previous:
                        signal.signal(signum, _during_teardown)
                backend.teardown()
    except KeyboardInterrupt:
        raise KpbenchError("interrupted; every launched machine was torn down") from None
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(signum, handler)
