"""Which files a workflow step reads, for the test that every one of them is declared to the rule
(`KPBENCH_READ_TRACE=<folder>`): an audit hook notes each file opened for reading inside the working
tree, except those the process wrote itself first (its own staging), and the list is written to the
folder when the process ends (or calls `write_trace`, if it ends without interpreter teardown).
Unset, nothing is installed."""

import atexit
import json
import os
import sys
from pathlib import Path

TRACE_ENV = "KPBENCH_READ_TRACE"
_writers = []


def trace_reads(step):
    """Note the tree's files this process reads, as step `step` (a rule's name or a command's)."""
    folder = os.environ.get(TRACE_ENV)
    if not folder:
        return
    tree, reads, written = Path.cwd().resolve(), set(), set()

    def hook(event, args):
        if event != "open" or not isinstance(args[0], (str, os.PathLike)):
            return
        path = Path(os.fsdecode(args[0]))
        path = (path if path.is_absolute() else tree / path).resolve()
        if _writes(args[1], args[2]):
            written.add(path)
        elif path not in written and path.is_relative_to(tree) and path.is_file():
            reads.add(str(path.relative_to(tree)))

    def write():
        record = {"step": step, "argv": sys.argv, "reads": sorted(reads)}
        Path(folder, f"{step}-{os.getpid()}.json").write_text(json.dumps(record))

    sys.addaudithook(hook)
    atexit.register(write)
    _writers.append(write)


def write_trace():
    """Write the trace now, for a process about to end by os._exit (which runs no atexit handler)."""
    while _writers:
        write = _writers.pop()
        atexit.unregister(write)
        write()


def _writes(mode, flags):
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR)) if isinstance(flags, int) else False
