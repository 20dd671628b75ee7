"""Benchmark 9: the per-step floor of a software stack on this machine, from a batch sweep.

Times the steady training steps of the reference CNN (kpbench's own step: tf.data and the masked loss
with tf-keras, NumPy batches with Keras 3 on JAX) at each batch size, one warm-up epoch per size
(tracing, compilation), then `--repeats` timed epochs of `--steps` steps; each size's step time is the
median of its timed steps (this VM stalls a process for 10–20 s now and then), with p10 and p90.
A least-squares line through the medians, step = floor + batch × per-image time, splits each step
into what every step costs whatever its batch (dispatch, the weight update, host work: the floor
kpbench.forecast.rental prices) and what each image adds.

    python bench/batch_sweep.py --out bench/measured/<date-machine>-batch-sweep
    python bench/batch_sweep.py --batches 8 16 --steps 2 --repeats 1      # that it works

With --out, the folder holds sweep.json; under bench/measured/ it is the measured floor of its
framework on its device kind for `kpbench predict` and `plan`.
"""

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line  # noqa: E402

from kpbench.core.files import write_json  # noqa: E402
from kpbench.core.layout import SWEEP_FILE  # noqa: E402
from kpbench.machine.detect import FRAMEWORKS, default_framework  # noqa: E402

BATCHES = (8, 16, 32, 64, 128, 256, 512)


def line_fit(batches, step_s):
    """Least squares step = floor + batch × per_image over the sizes, and each size's residual."""
    slope, intercept = np.polyfit(np.asarray(batches, float), np.asarray(step_s, float), 1)
    residuals = [s - (intercept + slope * b) for b, s in zip(batches, step_s)]
    return {"floor_s": float(intercept), "per_image_s": float(slope), "residual_s": [float(r) for r in residuals]}


def sweep(keras, framework, batches, steps, repeats, precision):
    from kpbench.model.objectives import compile_model, pack_targets
    from kpbench.model.registry import REFERENCE_MODEL, build_model
    from kpbench.train.callbacks import step_timer

    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        images = batch * steps
        x = rng.random((images, 96, 96, 1), dtype=np.float32)
        targets = pack_targets(rng.uniform(10, 86, (images, 30)).astype(np.float32), np.ones((images, 30), bool))
        if framework == "tf":
            from kpbench.train.inputs import make_dataset

            feed = {"x": make_dataset(x, targets, batch, shuffle_seed=0)}
        else:
            feed = {"x": x, "y": targets, "batch_size": batch, "shuffle": True}
        keras.utils.set_random_seed(0)
        model = compile_model(build_model(REFERENCE_MODEL, precision, keras), 1e-3, 3.0, framework != "tf", keras)
        model.fit(**feed, epochs=1, verbose=0)  # warm-up: tracing and compilation
        clock, timed = step_timer(keras), []
        for _ in range(repeats):
            model.fit(**feed, epochs=1, verbose=0, callbacks=[clock])
            timed += clock.step_s
        p10, p90 = (float(np.percentile(timed, q)) for q in (10, 90))
        rows.append({"batch": batch, "step_s": statistics.median(timed), "p10_s": p10, "p90_s": p90,
                     "steps_timed": len(timed), "images_per_s": batch / statistics.median(timed)})
        print(f"batch {batch:4d}: {1000 * rows[-1]['step_s']:9.2f} ms/step (p10 {1000 * p10:.2f}, p90 {1000 * p90:.2f}; "
              f"{len(timed)} steps) {rows[-1]['images_per_s']:7.1f} img/s", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per batch size")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--framework", choices=FRAMEWORKS, default=default_framework(),
                        help="default: tf where TensorFlow is installed, else keras3-jax")
    parser.add_argument("--out", type=Path, help="write sweep.json here")
    args = parser.parse_args()
    if len(args.batches) < 2:
        parser.error("a line needs at least two batch sizes")

    if args.framework == "tf":
        import tf_keras as keras
    else:
        import keras
    from kpbench.machine.detect import cpu_model, gpu_names

    gpus = gpu_names(args.framework)
    rows = sweep(keras, args.framework, args.batches, args.steps, args.repeats, args.precision)
    fit = line_fit([r["batch"] for r in rows], [r["step_s"] for r in rows])
    machine = machine_line(args.framework)
    print(f"machine: {machine}; GPU: {', '.join(gpus) or False}")
    print(f"floor (step time at batch 0, least squares): {1000 * fit['floor_s']:.2f} ms; "
          f"{1000 * fit['per_image_s']:.3f} ms per image")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / SWEEP_FILE, {
            "what": f"bench/batch_sweep.py: reference_cnn, {args.precision}, {args.steps} steps x {args.repeats} "
                    "epochs per batch size, medians",
            "date": datetime.date.today().isoformat(), "machine": machine, "framework": args.framework,
            "device_kind": "gpu" if gpus else "cpu", "device": gpus[0] if gpus else cpu_model(),
            "precision": args.precision, "batches": rows, **fit})


if __name__ == "__main__":
    main()
