"""The callbacks a timed training run hands to `model.fit`, one job each: epoch and step timing,
the heartbeat the launcher watches, the journal a resumed run starts from, a spot run's checkpoint
archive, the trained weights, the time limit, and the fault injection the launcher's tests use. Each is made for the Keras module it runs under
(tf-keras or Keras 3), whose Callback it must subclass."""

import os
import tarfile
import time
from pathlib import Path

from kpbench.core.files import write_json
from kpbench.core.metrics import KERAS_COLUMNS

# A spot run's checkpoint archive, beside its backup folder, whose contents it holds under ARCHIVE_ROOT.
ARCHIVE_NAME, ARCHIVE_ROOT = "checkpoint.tar", "backup"


def epoch_timer(keras, earlier_rows=()):
    class EpochTimer(keras.callbacks.Callback):
        """Wall-clock per epoch, and how much of it validation took, measured around fit's own loop,
        with the epoch's metrics: one history row per epoch. A resumed run starts from the rows of
        the epochs already done (`earlier_rows`), so its history covers every epoch."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.rows = list(earlier_rows)
            self.offset = self.rows[-1]["elapsed_s"] if self.rows else 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()
            self.validation_s = 0.0

        def on_test_begin(self, logs=None):
            self.test_start = time.perf_counter()

        def on_test_end(self, logs=None):
            self.validation_s += time.perf_counter() - self.test_start

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            logs = logs or {}
            # An epoch redone after a resume replaces its journalled row.
            self.rows = [row for row in self.rows if row["epoch"] < epoch + 1]
            self.rows.append({
                "epoch": epoch + 1, "elapsed_s": self.offset + now - self.start,
                "epoch_s": now - self.epoch_start,
                "validation_s": self.validation_s,
                **{column: logs.get(key) for column, key in KERAS_COLUMNS.items()},
            })

    return EpochTimer()


def step_timer(keras):
    class StepTimer(keras.callbacks.Callback):
        """Seconds per training step (the steady-state throughput is computed from them)."""

        def on_train_begin(self, logs=None):
            self.step_s = []

        def on_train_batch_begin(self, batch, logs=None):
            self.step_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step_s.append(time.perf_counter() - self.step_start)

    return StepTimer()


def heartbeat(keras, path, timer):
    class Heartbeat(keras.callbacks.Callback):
        """The file the launcher watches: touched at every training step (a worker that stops
        stepping is stalled), and holding the last epoch's row of `timer` (an earlier callback),
        from which the launcher prints one line per epoch."""

        def on_train_begin(self, logs=None):
            Path(path).touch()

        def on_train_batch_end(self, batch, logs=None):
            os.utime(path)

        def on_epoch_end(self, epoch, logs=None):
            write_json(path, {**timer.rows[-1], "epochs": self.params.get("epochs")})

    return Heartbeat()


def epoch_journal(keras, path, timer):
    class EpochJournal(keras.callbacks.Callback):
        """Every finished epoch's row of `timer` (an earlier callback), kept beside the checkpoint
        so that a resumed run's history and training time cover the epochs done before."""

        def on_epoch_end(self, epoch, logs=None):
            write_json(path, timer.rows)

    return EpochJournal()


def checkpoint_archive(keras, backup_dir):
    """The backup folder as one archive beside it, replaced whole after every epoch's checkpoint (so a
    spot instance ships a consistent checkpoint however its upload and the next save interleave;
    kpbench.backends.aws.interruption). Its time falls between epochs: in the run's wall time, not its epochs'."""
    archive = Path(backup_dir).parent / ARCHIVE_NAME

    class CheckpointArchive(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            partial = archive.with_suffix(".partial")
            with tarfile.open(partial, mode="w") as tar:
                tar.add(backup_dir, arcname=ARCHIVE_ROOT)
            os.replace(partial, archive)

    return CheckpointArchive()


def final_weights(keras):
    """The trained weights, read in `on_train_end`: under MultiWorkerMirroredStrategy reading the
    batch-norm statistics is an all-reduce, and inside `fit` every worker reaches it at the same point.
    Read after `fit` returned, one worker's all-reduce could wait on a peer still releasing its
    iterators, and once did for over a minute on a 2-core machine."""

    class FinalWeights(keras.callbacks.Callback):
        weights = None

        def on_train_end(self, logs=None):
            self.weights = self.model.get_weights()

    return FinalWeights()


def time_limit(keras, max_seconds):
    class TimeLimit(keras.callbacks.Callback):
        """Ends fit after the epoch past which one more, as long as the last, would overrun
        `max_seconds` of training: a lease-bound machine still writes a whole run."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            if now - self.start + (now - self.epoch_start) > max_seconds:
                self.model.stop_training = True

    return TimeLimit()


def injected_fault(keras, worker_index):
    """For the launcher's tests, KPBENCH_INJECT_FAULT=crash|hang:WORKER:STEP makes worker WORKER
    exit, or hang, at its STEP-th training step; None where it is not set."""
    fault = os.environ.get("KPBENCH_INJECT_FAULT")
    if not fault:
        return None
    kind, worker, step = fault.split(":")
    if int(worker) != worker_index:
        return None

    class InjectedFault(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.steps == int(step):
                if kind == "crash":
                    os._exit(3)
                time.sleep(10 ** 6)

    return InjectedFault()
