"""Run one instance's training through its backend: launch, wait, collect, and teardown whatever
happens (in `finally`), also when Snakemake or the user stops the job.

Which launcher runs a backend is the registry's answer (kpbench.backends.registry).
"""

import signal
import threading

from kpbench import KpbenchError
from kpbench.backends import registry
from kpbench.backends.base import STOP, say
from kpbench.backends.run_lock import RunLock
from kpbench.core.version import code_version


def make_backend(spec, launch, dataset, out_dir):
    """The backend of the spec's instance row: a single machine, or `workers` of them for a cluster."""
    instance = spec["instance"]
    try:
        kind = registry.kind(instance["backend"])
    except KpbenchError as error:
        raise KpbenchError(f"instance {instance['name']}: {error}") from None
    return kind.launcher(spec, launch, dataset, out_dir, kind.workers(instance))


def _stop(signum, frame):
    STOP.set()  # seen at the wait's next poll even if this exception is lost (kpbench.backends.base.pause)
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
    STOP.clear()
    if in_main_thread:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum, handler in previous.items():
            if handler is not signal.SIG_IGN:  # ignored: started in the background, as a shell does
                signal.signal(signum, _stop)
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
        STOP.clear()
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(signum, handler)
