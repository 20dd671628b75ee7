"""Benchmark 4: loopback cluster scaling — a 2-worker `local-cluster` against 1 worker at the same
global batch, through the real backends (separate processes, MultiWorkerMirroredStrategy).

Scaling efficiency = (cluster images/s) / (workers × single-worker images/s). On one machine the
workers share its cores, so this measures the cost of the distribution machinery, not a speed-up.

    python bench/cluster.py                         # 640 images, batch 64 global, 2 epochs
    python bench/cluster.py --images 64 --global-batch 16 --epochs 1 --repeats 1
"""

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from kpbench.backends.launch import run_instance
    from kpbench.core.settings import load_config, run_spec, validated
    from kpbench.data.preprocess import preprocess
    from kpbench.data.synthetic import write_synthetic_csvs

    config = load_config([Path(__file__).resolve().parents[1] / "config" / "config.yaml"])
    launch = {"limits": {**config["limits"], "stall_timeout_s": 600, "deadline_s": 3600}, "aws": config["aws"]}

    def spec(backend, workers):
        """The run spec the workflow would make (kpbench.core.settings) for one machine or a cluster of it."""
        row = {"name": backend, "backend": backend, "workers": workers, "gpus": 0, "usd_per_hour": None,
               "price_date": None}
        workload = {"epochs": args.epochs, "batch_size": args.global_batch // workers,
                    "max_train_images": args.images, "max_val_images": args.global_batch}
        bench = {**copy.deepcopy(config), "instances": [row], "workload": "bench", "workloads": {"bench": workload}}
        bench["training"].update(prediction_samples=1, peak_matmul_size=256, warmup_epochs=0)
        return run_spec(validated(bench, launching=False), backend, 1)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        rows = int((args.images + args.global_batch) / 0.8) + 1
        write_synthetic_csvs(scratch, n_train=rows, n_test=1, seed=1)
        preprocess(scratch, scratch / "dataset.npz", scratch / "stats.json", scratch / "samples.npz", 0.2, 0)
        results = {}
        for backend, workers in (("local", 1), ("local-cluster", args.workers)):
            rates = [run_instance(spec(backend, workers), launch, scratch / "dataset.npz", scratch / f"{backend}-{i}")
                     ["timings"]["train_step_images_per_s"] for i in range(args.repeats)]
            results[workers] = (statistics.median(rates), rates)
    single, cluster = results[1][0], results[args.workers][0]
    print(f"machine: {machine_line()}")
    print(f"{args.images} images, global batch {args.global_batch}, {args.epochs} epochs, median of {args.repeats}")
    print(f"1 worker:            {single:7.1f} img/s  runs {[round(r, 1) for r in results[1][1]]}")
    print(f"{args.workers} workers (loopback): {cluster:7.1f} img/s  runs "
          f"{[round(r, 1) for r in results[args.workers][1]]}")
    print(f"speed-up {cluster / single:.2f}x, scaling efficiency {cluster / (args.workers * single):.2f}")


if __name__ == "__main__":
    main()
