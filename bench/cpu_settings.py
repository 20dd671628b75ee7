"""Benchmark 12: TensorFlow's CPU settings (oneDNN's graph optimisations off and on; one inter-op thread)
side by side on this CPU.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it is imported, so each setting runs as its own
process of bench/throughput.py; rounds alternate the settings (a stall of the machine falls on
all alike) and each figure is the median over rounds. After the speeds, one seeded training of the
reference model with oneDNN off and on: the untrained model's loss must agree to rounding (the same
weights, other kernels), or the faster setting would be computing another model; the losses after
training, where rounding differences have grown through the updates, beside a training with another
seed, the yardstick of how far trainings of one model land apart. kpbench.machine.cpu_settings chooses
the settings a run uses from these comparisons (bench/RESULTS.md).

    python bench/cpu_settings.py                      # 320 images, 2 timed epochs, 3 rounds
    python bench/cpu_settings.py --images 64 --epochs 1 --rounds 1 --matmul-size 256
    python bench/cpu_settings.py --rounds 0           # the losses only
    python bench/cpu_settings.py --no-losses          # the speeds only
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, reference_training  # noqa: E402

from kpbench.machine.cpu_settings import CHOSEN_ENV, ONEDNN_ENV  # noqa: E402

HERE = Path(__file__).resolve().parent
# Each setting is the environment of its processes. TensorFlow sizes its inter-op pool (ops run side by side)
# from TF_NUM_INTEROP_THREADS, read when its first session starts (tensorflow/core/common_runtime/process_util.cc);
# by default it is the number of cores, so on a small machine two ops can each ask every core for its threads.
SETTINGS = {"oneDNN off": {ONEDNN_ENV: "0"}, "oneDNN on": {ONEDNN_ENV: "1"},
            "oneDNN on, 1 inter-op thread": {ONEDNN_ENV: "1", "TF_NUM_INTEROP_THREADS": "1"}}
ROW = re.compile(r"^(?P<name>.+?)\s+(?P<step>[\d.]+) img/s .*\(fit wall time: (?P<wall>[\d.]+) img/s; "
                 r"returned (?P<tail>[\d.]+) s after")
MATMUL = re.compile(r"^FP32 matmul \d+\^2: (?P<gflops>[\d.]+) GFLOP/s")


def throughput(setting, args):
    """bench/throughput.py's rows in a process of its own under `setting`: {row: (step, wall img/s, seconds
    `fit` took to return after training ended)}, and its matmul GFLOP/s."""
    command = [sys.executable, str(HERE / "throughput.py"), "--images", str(args.images), "--epochs",
               str(args.epochs), "--repeats", "1", "--matmul-size", str(args.matmul_size), "--precisions"]
    printed = _child(command, setting)
    rows = {m["name"].strip(): (float(m["step"]), float(m["wall"]), float(m["tail"])) for m in map(ROW.match, printed) if m}
    matmul = next(float(m["gflops"]) for m in map(MATMUL.match, printed) if m)
    return rows, matmul


def losses(setting, seed, args):
    """One seeded run of the reference model under `setting`: its loss before training, then each epoch's."""
    command = [sys.executable, __file__, "--train-losses", str(seed), "--images", str(args.images), "--epochs",
               str(args.epochs)]
    return json.loads(_child(command, setting)[-1])


def _child(command, setting):
    env = {**{key: value for key, value in os.environ.items() if key != CHOSEN_ENV}, **setting}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed under {setting}:\n{done.stderr[-3000:]}")
    return done.stdout.splitlines()


def train_losses(seed, images, epochs):
    """Print one seeded training's loss before training and per epoch, as JSON (the child of `losses`)."""
    import tf_keras as keras

    model, feed = reference_training(keras, images, 64, seed)
    before = model.evaluate(feed["x"], steps=feed["steps_per_epoch"], verbose=0, return_dict=True)["loss"]
    history = model.fit(**feed, epochs=epochs, verbose=0)
    print(json.dumps([float(before), *map(float, history.history["loss"])]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--losses", action=argparse.BooleanOptionalAction, default=True,
                        help="after the speeds, the seeded trainings that compare oneDNN off and on")
    parser.add_argument("--train-losses", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_losses is not None:
        return train_losses(args.train_losses, args.images, args.epochs)

    measured = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, setting in SETTINGS.items():
            measured[name].append(throughput(setting, args))
    print(f"machine: {machine_line('tf')}")
    print(f"{args.images} images, batch 64, {args.epochs} timed epochs; each setting in its own process, "
          f"alternating, median of {args.rounds} rounds")
    for name, runs in measured.items() if args.rounds else ():
        print(f"{name}: FP32 matmul {args.matmul_size}^2 {statistics.median(m for _, m in runs):.1f} GFLOP/s")
        for row in runs[0][0]:
            step, wall, tail = ([rows[row][i] for rows, _ in runs] for i in (0, 1, 2))
            print(f"{name}: {row:54s} step {statistics.median(step):7.1f} img/s  fit wall "
                  f"{statistics.median(wall):7.1f} img/s  (rounds: step {_each(step)}; wall {_each(wall)}; "
                  f"returned after training {_each(tail, '.2f')} s)")
    if not args.losses:
        return
    # One setting is deterministic here; how far a training with another seed lands is the yardstick.
    runs = [*((name, SETTINGS[name], 0) for name in ("oneDNN off", "oneDNN on")), ("off, seed 1", SETTINGS["oneDNN off"], 1)]
    trained = {name: losses(setting, seed, args) for name, setting, seed in runs}
    (off_before, *off), (on_before, *on), (_, *seed_1) = trained.values()
    print(f"loss before training: {' ; '.join(f'{name} {values[0]:.7f}' for name, values in trained.items())}; "
          f"relative difference {abs(off_before - on_before) / abs(off_before):.1e}")
    print("loss per epoch: " + "; ".join(f"{name} {_each(values[1:], '.6f')}" for name, values in trained.items()))
    print(f"largest relative difference after training: off against on {_largest(off, on):.1e}, "
          f"seed 0 against seed 1 {_largest(off, seed_1):.1e}")


def _each(values, spec=".1f"):
    return ", ".join(f"{value:{spec}}" for value in values)


def _largest(first, second):
    return max(abs(a - b) / abs(a) for a, b in zip(first, second))


if __name__ == "__main__":
    main()
