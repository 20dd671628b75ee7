"""One trainer per run folder, and no worker that outlives its launcher.

A launcher killed hard (SIGKILL, the OOM killer, a closed terminal) runs no teardown. Its workers,
each in its own session so that teardown can kill its process group, would be re-parented to init
and train on: beside the next run of the same folder, on its checkpoint, spoiling its timings.
"""

import ctypes
import fcntl
import os
import signal
import sys
from pathlib import Path

from kpbench import KpbenchError

LOCK_FILE = ".lock"
LAUNCHER_ENV = "KPBENCH_LAUNCHER_PID"  # set by a launcher for the workers it starts
_PR_SET_PDEATHSIG = 1


class RunLock:
    """An exclusive flock on `<folder>/.lock`, which holds the holder's PID and command line.

    The kernel drops a flock when its holder dies, however it dies, so a crash never leaves a stale
    lock; a second launcher is refused at once with the holder's PID. The file is removed on release
    while still locked; a taker checks that the file it locked is still the one at the path, so two
    launchers never each hold a different copy.
    """

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_FILE
        self.fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise KpbenchError(f"{self.path.parent} is being trained by another launcher: process {holder}; "
                                   "wait for it, or stop it, before starting this run again") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # released and removed by its holder while we waited: take the new file
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} ({' '.join(sys.argv)})\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def die_with_launcher():
    """In a worker: be killed the moment the launcher that started it dies.

    PR_SET_PDEATHSIG makes the kernel send SIGKILL when the parent dies, whatever kills it, and
    needs nothing from this process: not a watcher thread, which a worker stuck in a collective op
    or holding the GIL could never run, nor a poll loop with its delay. The worker sets it on itself
    (no `preexec_fn`, which is unsafe in a threaded launcher) and then checks that its parent is still
    the launcher that named itself in the environment: had the launcher died before prctl, the
    worker was re-parented already and stops here. The signal fires when the launcher's thread that
    started the worker ends; launchers start and wait for their workers in one thread. Linux only:
    elsewhere the launcher's teardown is all there is.
    """
    launcher = os.environ.get(LAUNCHER_ENV)
    if launcher is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(launcher):
        os.kill(os.getpid(), signal.SIGKILL)


def launcher_environment(env):
    """`env` for a worker this process starts: it will die with this process."""
    return {**env, LAUNCHER_ENV: str(os.getpid())}
