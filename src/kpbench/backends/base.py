"""What every backend shares: the launch/wait/collect/teardown interface (kpbench.backends.launch runs it,
teardown in `finally`), the collect step's last act, and the progress lines a person watches."""

import sys
import threading
import time

from kpbench.core.files import write_json
from kpbench.core.layout import RUN_JSON
from kpbench.train.run_writer import move_run_files

STOP = threading.Event()  # set by kpbench.backends.launch's handler of SIGINT and SIGTERM


def pause(seconds):
    """Sleep between two polls of a wait, and stop there once a signal asked to. The handler's
    KeyboardInterrupt alone can be lost: Python runs a handler after any bytecode, also in a finalizer,
    whose exceptions it prints and ignores; a flag checked at every poll cannot be (the signal module's
    "Note on Signal Handlers and Exceptions", https://docs.python.org/3/library/signal.html)."""
    _stop_if_asked()
    time.sleep(seconds)
    _stop_if_asked()


def _stop_if_asked():
    if STOP.is_set():
        raise KeyboardInterrupt("stop requested by a signal")


def say(line):
    """A progress line for the person watching: the train rule sends stdout to its log only and
    stderr to both the log and Snakemake's terminal."""
    print(line, file=sys.stderr, flush=True)


def epoch_line(label, progress):
    """`local r1: epoch 3/12, 75 s, validation RMSE 5.31 px` from a worker's heartbeat file."""
    rmse = progress.get("val_rmse_px")
    return (f"{label}: epoch {progress['epoch']}/{progress.get('epochs') or '?'}, {progress['elapsed_s']:.0f} s, "
            f"validation RMSE {'n/a' if rmse is None else f'{rmse:.2f} px'}")


def run_label(spec):
    """How a run's progress lines name it: its instance and repeat, or its instance's probe."""
    return f"{spec['instance']['name']} {'probe' if spec.get('probe') else 'r' + str(spec.get('repeat', 1))}"



class Backend:
    """The interface every backend shares; `finish` ends every backend's collect the same way."""

    code = None  # the launching code's version (kpbench.core.version), set by run_instance before launch
    provider = None  # the cloud that rents the machines (kpbench.backends.registry); None: this machine

    def launch(self):
        raise NotImplementedError

    def wait(self):
        raise NotImplementedError

    def collect(self):
        raise NotImplementedError

    def teardown(self):
        raise NotImplementedError

    def finish(self, run, staging):
        """Record which code made the run (the launcher's, read at launch: an EC2 instance runs the
        launcher's bundle), then move the run's files from `staging` into the run folder."""
        run["code"] = self.code
        write_json(staging / RUN_JSON, run)
        move_run_files(staging, self.out_dir)
        return run
