"""Benchmark 13: where a training step's time goes inside oneDNN, per primitive and kernel, on this CPU.

oneDNN prints one line per primitive it executes when ONEDNN_VERBOSE=1 (its "Verbose Mode" page:
primitive kind, implementation, propagation kind, shapes, and the execution time in ms last). A child
process trains the reference model for a few steps with oneDNN's graph optimisations on and prints a
marker after each step; this script sums each step's lines by (kind, propagation, implementation),
takes the median over the steps after the first (which also creates the primitives), and prints each
group's time per step, its share of the primitives' time, and, for convolutions, its GFLOP/s beside
this machine's 4096² FP32 matmul: a kernel far under the matmul is where the step loses its share.

    python bench/onednn_profile.py                    # batch 64, 4 steps
    python bench/onednn_profile.py --images 16 --batch-size 8 --steps 2 --matmul-size 128
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, reference_training  # noqa: E402

STEP_MARK = "kpbench-step-end"
# mb64_ic32oc64_ih94oh92kh3sh1dh0ph0_iw94ow92kw3sw1dw0pw0 (and 'g' groups, 'id/od/kd' for 3-D; not used here)
CONV_SHAPE = re.compile(r"(?:g(?P<g>\d+))?mb(?P<mb>\d+)_ic(?P<ic>\d+)oc(?P<oc>\d+)_ih\d+oh(?P<oh>\d+)kh(?P<kh>\d+)"
                        r"\S*?_iw\d+ow(?P<ow>\d+)kw(?P<kw>\d+)")


def child(args):
    """Train for `args.steps` steps, a marker line after each (oneDNN's lines go to the same stdout)."""
    import time

    import tf_keras as keras

    class Marker(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            print(STEP_MARK, time.perf_counter(), flush=True)

    model, feed = reference_training(keras, args.images, args.batch_size, seed=0)
    model.fit(feed["x"], epochs=1, steps_per_epoch=args.steps, callbacks=[Marker()], verbose=0)


def parse_steps(lines):
    """Per step from oneDNN's exec lines and the markers: ({(kind, propagation, implementation): [ms, GFLOP]},
    the step's wall time in ms from the previous marker, None for the first)."""
    steps, current, last = [], defaultdict(lambda: [0.0, 0.0]), None
    for line in lines:
        if line.startswith(STEP_MARK):
            at = float(line.split()[1])
            steps.append((dict(current), None if last is None else 1e3 * (at - last)))
            current, last = defaultdict(lambda: [0.0, 0.0]), at
            continue
        fields = line.split(",")
        if not fields[0].startswith("onednn_verbose") or "exec" not in fields[:4]:
            continue
        at = fields.index("exec")
        kind, implementation, propagation = fields[at + 2], fields[at + 3], fields[at + 4]
        entry = current[(kind, propagation, implementation)]
        entry[0] += float(fields[-1])
        entry[1] += conv_gflop(fields[-2]) if kind == "convolution" else 0.0  # NaN: a shape not read
    return steps


def conv_gflop(shape):
    """A convolution's multiply-adds × 2 from its oneDNN problem description, in GFLOP (any propagation
    does the same count)."""
    m = CONV_SHAPE.search(shape)
    if not m:
        return float("nan")  # its group's rate prints as unknown rather than understated
    size = {key: int(value) for key, value in m.groupdict(default="1").items()}
    return 2 * size["mb"] * size["ic"] * size["oc"] * size["oh"] * size["ow"] * size["kh"] * size["kw"] / size["g"] / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["TF_ENABLE_ONEDNN_OPTS"] = "1"  # this profiles oneDNN: on, whatever TensorFlow's default or the user's value
    done = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"the profiled training failed:\n{done.stderr[-3000:]}")
    measured = parse_steps(done.stdout.splitlines())[1:]  # the first step also creates the primitives
    steps, walls = [step for step, _ in measured], [wall for _, wall in measured]
    from kpbench.machine.detect import matmul_gflops

    peak = matmul_gflops(args.matmul_size, 3, "tf")
    print(f"machine: {machine_line('tf')}")
    info = [line.split(",info,", 1)[1] for line in done.stdout.splitlines()
            if line.startswith("onednn_verbose") and ",info," in line and ("oneDNN v" in line or ",cpu," in line)]
    print(f"oneDNN: {'; '.join(info) or 'printed no information'}; TF_ENABLE_ONEDNN_OPTS={env['TF_ENABLE_ONEDNN_OPTS']}")
    print(f"FP32 matmul {args.matmul_size}^2: {peak:.1f} GFLOP/s; batch {args.batch_size}; median of {len(steps)} "
          f"steps after the first")
    groups = sorted({key for step in steps for key in step})
    if not groups:
        print("no oneDNN primitive ran: TensorFlow's own kernels did the whole step")
        return
    median = {key: [statistics.median(step.get(key, [0.0, 0.0])[i] for step in steps) for i in (0, 1)]
              for key in groups}
    total = sum(ms for ms, _ in median.values())
    wall = statistics.median(walls)
    print(f"step: {wall:.1f} ms wall; oneDNN's primitives {total:.1f} ms summed ({100 * total / wall:.1f} % of the step: "
          f"over 100 % where TensorFlow runs ops side by side, each on all the cores)")
    for (kind, propagation, implementation), (ms, gflop) in sorted(median.items(), key=lambda item: -item[1][0]):
        rate = f"{gflop / ms * 1e3:7.1f} GFLOP/s {100 * gflop / ms * 1e3 / peak:5.1f} % of matmul" if gflop else ""
        print(f"{kind:19s} {propagation:16s} {implementation or '-':36s} {ms:9.1f} ms {100 * ms / total:5.1f} %  {rate}")


if __name__ == "__main__":
    main()
