"""Benchmark 1: Kaggle-format training.csv → arrays, kpbench against the original study's approach.

The original study read the CSV with pandas, forward-filled missing labels, then looped over rows in
Python, splitting each Image string into a list and converting it. kpbench maps the file and parses
every Image field in one pass of NumPy array operations over its bytes, chunks of rows on every
core (falling back to its careful, fault-naming reader on anything unusual). Both are timed from
the file on disk to arrays, median of repeats, and must give the same pixels.

    python bench/parse.py                 # 7,049 synthetic rows, 3 repeats
    python bench/parse.py --rows 100 --repeats 1 --csv path/to/training.csv

Then where kpbench's time goes, phase by phase (median of the repeats, minor page faults of each): the
file mapped and split into rows, the leading fields, the Image fields on every core and on one, and
whether the fast reader accepted the file or the careful one would have had to read it.
"""

import argparse
import mmap
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median_seconds  # noqa: E402

from kpbench.data import fast_reader  # noqa: E402
from kpbench.data.csv_reader import load_training_csv  # noqa: E402
from kpbench.data.kaggle_format import TRAINING_COLUMNS  # noqa: E402
from kpbench.data.synthetic import write_synthetic_csvs  # noqa: E402
from kpbench.model.original_study import load_training  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=7049)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", type=Path, help="an existing training.csv instead of synthetic rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.csv
        if path is None:
            write_synthetic_csvs(Path(scratch), n_train=args.rows, n_test=1, seed=1)
            path = Path(scratch) / "training.csv"
        size_mb = path.stat().st_size / 1e6
        ours_s, ours_all, (images, _, _) = median_seconds(lambda: load_training_csv(path), args.repeats)
        seed_s, seed_all, (seed_images, _) = median_seconds(lambda: load_training(path), args.repeats)
        phases, accepted = fast_reader_phases(path, args.repeats)
    same = np.array_equal(images[..., np.newaxis] / 255.0, seed_images)
    print(f"machine: {machine_line()}")
    print(f"input: {len(images)} rows, {size_mb:.1f} MB")
    print(f"original study (pandas + Python loop):    median {seed_s:.3f} s  runs {[round(t, 3) for t in seed_all]}")
    print(f"kpbench (mapped bytes, NumPy, all cores): median {ours_s:.3f} s  runs {[round(t, 3) for t in ours_all]}")
    print(f"speed-up: {seed_s / ours_s:.1f}x   same pixels: {same}")
    print(f"kpbench's phases (the fast reader {'accepted the file' if accepted else 'DECLINED it: the careful reader read it'}):")
    for name, (seconds, faults) in phases.items():
        print(f"  {name:44s} {seconds:7.3f} s  {faults:7d} minor page faults")
    if not same:
        sys.exit("the two parsers disagree")


def fast_reader_phases(path, repeats):
    """{phase: (median s, minor page faults of the last repeat)}, phase by phase as the fast reader runs them
    (kpbench.data.fast_reader), the Image fields also with this process held to one core; and whether the fast
    reader accepted the file (where it declines, the careful reader reads it)."""
    timed = {}

    def phase(name, function):
        for _ in range(repeats):
            faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            result = function()
            timed.setdefault(name, []).append((time.perf_counter() - start,
                                                resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
        return result

    columns = list(TRAINING_COLUMNS)
    if fast_reader.read_fast(path, columns) is None:  # the phases below assume a file it takes
        return {}, False
    header = len(",".join(columns)) + 1
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        leading, starts, ends = phase("map the file, split it into rows",
                                      lambda: fast_reader._split_rows(data, header, len(columns) - 1))
        phase("leading fields (pandas on their block)", lambda: fast_reader._parse_leading_fields(leading, columns[:-1]))
        image_field_phases(phase, np.frombuffer(data, dtype=np.uint8), starts, ends)
    return {name: (statistics.median(s for s, _ in runs), runs[-1][1]) for name, runs in timed.items()}, True


def image_field_phases(phase, text, starts, ends):
    """The Image fields on every core this process may use, then held to one (the mapping can close once
    `text` goes)."""
    cores = os.sched_getaffinity(0)
    phase(f"Image fields, {len(cores)} threads", lambda: fast_reader._parse_pixel_fields(text, starts, ends))
    os.sched_setaffinity(0, {min(cores)})
    try:
        phase("Image fields, 1 thread", lambda: fast_reader._parse_pixel_fields(text, starts, ends))
    finally:
        os.sched_setaffinity(0, cores)


if __name__ == "__main__":
    main()
