"""Benchmark 3: init time, process start → compiled model (the original study's "initialization").

kpbench starts from the preprocessed arrays; the original study parsed the CSV (pandas and a Python
loop) in every training process before building the model. Each path runs in a fresh process, as a
training run does, and is measured from that process's start; median of repeats.

    python bench/init.py                      # 7,049 synthetic rows, 3 repeats
    python bench/init.py --rows 60 --repeats 1
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line  # noqa: E402


def child(path_kind, source):
    """Runs in the measured process: load, build, compile, report seconds since process start."""
    from kpbench.machine.detect import process_start_time

    started = process_start_time()
    # TensorFlow comes in at the first build: part of init, as in the study.
    from kpbench.model.objectives import compile_model
    from kpbench.model.registry import REFERENCE_MODEL, build_model
    if path_kind == "kpbench":
        from kpbench.data.preprocess import load_dataset

        load_dataset(source)
        compile_model(build_model(REFERENCE_MODEL, "float32"), 1e-3, 3.0, False)
    else:
        from kpbench.model.original_study import compiled_model, load_training

        load_training(source)
        compiled_model()
    print(json.dumps({"init_s": time.time() - started}))


def measure(path_kind, source, repeats):
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--child", path_kind, "--source", str(source)],
                             capture_output=True, text=True, check=True).stdout
        times.append(json.loads(out.strip().splitlines()[-1])["init_s"])
    return statistics.median(times), times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=7049)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["kpbench", "original"], help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.source)

    from kpbench.data.preprocess import preprocess
    from kpbench.data.synthetic import write_synthetic_csvs

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        write_synthetic_csvs(scratch, n_train=args.rows, n_test=2, seed=1)
        preprocess(scratch, scratch / "dataset.npz", scratch / "stats.json", scratch / "samples.npz", 0.1, 0)
        ours, ours_all = measure("kpbench", scratch / "dataset.npz", args.repeats)
        seed, seed_all = measure("original", scratch / "training.csv", args.repeats)
    print(f"machine: {machine_line()}")
    print(f"input: {args.rows} rows")
    print(f"original study (CSV parse + build + compile): median {seed:.2f} s  runs {[round(t, 2) for t in seed_all]}")
    print(f"kpbench (preprocessed arrays + build + compile): median {ours:.2f} s  runs {[round(t, 2) for t in ours_all]}")
    print(f"saving: {seed - ours:.2f} s per training process ({seed / ours:.1f}x)")


if __name__ == "__main__":
    main()
