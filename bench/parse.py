"""Benchmark 1: Kaggle-format training.csv → arrays, kpbench against the original study's approach.

The original study read the CSV with pandas, forward-filled missing labels, then looped over rows in
Python, splitting each Image string into a list and converting it. kpbench maps the file and parses
every Image field in one pass of NumPy array operations over its bytes, chunks of rows on every
core (falling back to its careful, fault-naming reader on anything unusual). Both are timed from
the file on disk to arrays, median of repeats, and must give the same pixels.

    python bench/parse.py                 # 7,049 synthetic rows, 3 repeats
    python bench/parse.py --rows 100 --repeats 1 --csv path/to/training.csv
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median_seconds  # noqa: E402

from kpbench.data.csv_reader import load_training_csv  # noqa: E402
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
    same = np.array_equal(images[..., np.newaxis] / 255.0, seed_images)
    print(f"machine: {machine_line()}")
    print(f"input: {len(images)} rows, {size_mb:.1f} MB")
    print(f"original study (pandas + Python loop):    median {seed_s:.3f} s  runs {[round(t, 3) for t in seed_all]}")
    print(f"kpbench (mapped bytes, NumPy, all cores): median {ours_s:.3f} s  runs {[round(t, 3) for t in ours_all]}")
    print(f"speed-up: {seed_s / ours_s:.1f}x   same pixels: {same}")
    if not same:
        sys.exit("the two parsers disagree")


if __name__ == "__main__":
    main()
