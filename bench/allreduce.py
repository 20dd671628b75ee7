"""Benchmark 7: the all-reduce sweep on a 2-worker loopback cluster beside this machine's
memory-copy bandwidth — what a cluster run measures before it trains (kpbench.train.collective), repeated.

Each repeat starts the workers afresh (processes with their own TF_CONFIG on 127.0.0.1) and runs
the whole sweep; the table gives, per message size, the median over repeats of each repeat's median
time, with algorithm and bus bandwidth as nccl-tests reports them, and the bus bandwidth's share of
the memory-copy bandwidth measured in the same processes. The α–β ring model is fitted to it.

    python bench/allreduce.py                               # 4 KiB to the model's gradients, 3 repeats
    python bench/allreduce.py --largest-bytes 65536 --calls 3 --repeats 1
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line  # noqa: E402


def worker(args):
    """One cluster worker: the sweep, as cluster.self_profile runs it, written as JSON."""
    import tensorflow as tf

    from kpbench.model.registry import REFERENCE_MODEL, build_model
    from kpbench.train import collective

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    largest = args.largest_bytes or collective.gradient_bytes(collective.trainable_parameters(build_model(REFERENCE_MODEL, "float32")))
    result = collective.measure(strategy, largest, timed_calls=args.calls)
    Path(args.out).write_text(json.dumps(result))


def sweep_once(args, scratch, repeat):
    """One repeat: fresh workers, fresh ports; every worker's measurements."""
    from kpbench.backends.local import free_ports
    from kpbench.train.run import tf_config

    addresses = [f"127.0.0.1:{port}" for port in free_ports(args.workers)]
    outputs = [scratch / f"r{repeat}-w{index}.json" for index in range(args.workers)]
    processes = [subprocess.Popen(
        [sys.executable, __file__, "--worker", "--out", str(out), "--calls", str(args.calls),
         "--largest-bytes", str(args.largest_bytes or 0)],
        env={**os.environ, "TF_CONFIG": json.dumps(tf_config(addresses, index))})
        for index, out in enumerate(outputs)]
    for process in processes:
        if process.wait(timeout=1800) != 0:
            raise SystemExit(f"a worker failed (exit status {process.returncode})")
    return [json.loads(out.read_text()) for out in outputs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per size and worker (after warm-up)")
    parser.add_argument("--largest-bytes", type=int, default=None, help="default: the model's gradient bytes")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from kpbench.analysis.scaling import fit_alpha_beta
    from kpbench.train import collective

    with tempfile.TemporaryDirectory() as scratch:
        sweeps = [collective.summarise(sweep_once(args, Path(scratch), r), args.workers) for r in range(args.repeats)]
    memcpy = statistics.median(s["memcpy_bytes_s"] for s in sweeps)
    factor = 2 * (args.workers - 1) / args.workers
    rows = []
    for position, first in enumerate(sweeps[0]["sizes"]):
        median = statistics.median(s["sizes"][position]["median_s"] for s in sweeps)
        rows.append({"bytes": first["bytes"], "median_s": median})
    fit = fit_alpha_beta(rows, args.workers)

    print(f"machine: {machine_line()}")
    print(f"{args.workers} workers on 127.0.0.1, {args.calls} timed calls per size and worker after "
          f"{collective.WARMUP_CALLS} warm-up calls; median over {args.repeats} repeat(s) of each repeat's median")
    copies = ", ".join(f"{sweep['memcpy_bytes_s'] / 1e9:.2f}" for sweep in sweeps)
    print(f"memory copy: {memcpy / 1e9:.2f} GB/s (median; repeats {copies})")
    print(f"{'size':>12} {'time (ms)':>10} {'algbw GB/s':>11} {'busbw GB/s':>11} {'busbw/copy':>11}   time per repeat (ms)")
    for position, row in enumerate(rows):
        algbw = row["bytes"] / row["median_s"]
        print(f"{row['bytes']:>12,} {row['median_s'] * 1e3:>10.3f} {algbw / 1e9:>11.3f} {algbw * factor / 1e9:>11.3f} "
              f"{algbw * factor / memcpy:>10.1%}   "
              + ", ".join(f"{s['sizes'][position]['median_s'] * 1e3:.3f}" for s in sweeps))
    latency = "unresolved" if not fit["latency_resolved"] else f"{fit['latency_s'] * 1e6:.0f} us"
    bandwidth = "unresolved" if not fit["bandwidth_resolved"] else f"{fit['bandwidth_bytes_s'] / 1e9:.3f} GB/s"
    print(f"alpha-beta fit: latency {latency} per message, bandwidth {bandwidth}, "
          f"RMS relative residual {fit['residual_rms']:.1%}")


if __name__ == "__main__":
    main()
