"""Benchmark 2: training throughput of the reference CNN against this machine's matmul peak.

Measured side by side in one process: an FP32 matrix multiply (the machine's practical peak), the
original study's plain `model.fit` on NumPy arrays (MSE on forward-filled pixels, batch 64), and
kpbench's training step (tf.data, masked loss, exact metrics) in FP32 and, where the CPU has
AVX512_BF16 or a GPU is present, mixed precision; on a GPU (or with --xla) each also compiled with
XLA, so `training.jit_compile` is chosen by measurement. Achieved GFLOP/s = images/s × the model's
counted training FLOPs per image (3 × forward). Each path gets one warm-up epoch (graph tracing); then the
training steps are timed one by one (the steady state MFU describes), and `fit`'s wall time,
epoch starts included, is printed beside them, with how long `fit` took to return after training ended
(tf.data's teardown; bench/RESULTS.md §13). Medians of repeats.

Where TensorFlow is not installed the same runs use Keras 3 on JAX (kpbench.model.keras3): kpbench's
step then reads NumPy batches instead of tf.data, and every path, the plain `fit` included, is
compiled with XLA, as JAX always does.

    python bench/throughput.py                        # 640 images, 3 timed epochs, 3 repeats
    python bench/throughput.py --images 64 --epochs 1 --repeats 1 --matmul-size 256
    python bench/throughput.py --framework keras3-jax --precisions mixed_bfloat16 mixed_float16
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line  # noqa: E402

from kpbench.machine.detect import FRAMEWORKS, default_framework  # noqa: E402


def fit_images_per_s(keras, fit, images, epochs, repeats):
    """(step images/s, wall images/s, seconds `fit` took to return after its training ended) of
    `fit(epochs, callbacks)` after one warm-up epoch, medians; the steps are timed by the pipeline's own
    step timer."""
    from kpbench.train.callbacks import step_timer

    class TrainingEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.at = time.perf_counter()

    fit(1, [])
    step_s, wall_s, tail_s = [], [], []
    clock, end = step_timer(keras), TrainingEnd()
    for _ in range(repeats):
        start = time.perf_counter()
        fit(epochs, [clock, end])
        wall_s.append(time.perf_counter() - start)
        tail_s.append(start + wall_s[-1] - end.at)
        step_s.append(sum(clock.step_s))
    median = statistics.median
    return images * epochs / median(step_s), images * epochs / median(wall_s), median(tail_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--precisions", nargs="*", help="mixed precisions to try (default: what the machine has)")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                        help="also time each kpbench precision compiled with XLA (default: on a GPU only; "
                             "keras3-jax always compiles)")
    parser.add_argument("--framework", choices=FRAMEWORKS, default=default_framework(),
                        help="default: tf where TensorFlow is installed, else keras3-jax")
    args = parser.parse_args()

    print(f"framework: {args.framework}", flush=True)
    if args.framework == "tf":
        import tf_keras as keras
    else:
        import keras
    from kpbench.machine.detect import cpu_flags, gpu_names, matmul_gflops
    from kpbench.model.objectives import compile_model, pack_targets
    from kpbench.model.registry import REFERENCE_MODEL, build_model, describe_model

    flops = describe_model(REFERENCE_MODEL, keras)["training_flops_per_image"]
    rng = np.random.default_rng(0)
    x = rng.random((args.images, 96, 96, 1), dtype=np.float32)
    pixels = rng.uniform(10, 86, (args.images, 30)).astype(np.float32)
    mask = np.repeat(rng.random((args.images, 15)) < 0.3, 2, axis=1)
    mask[:, :4] = True

    peak = matmul_gflops(args.matmul_size, args.repeats, args.framework)
    results = {}

    # The original study's own procedure (kpbench.model.original_study); its first row fully labelled, as in the
    # real file, so forward fill leaves no NaN. No validation split: only training steps are timed.
    from kpbench.model import original_study

    keras.utils.set_random_seed(0)
    plain = original_study.compiled_model(keras=keras)
    filled = original_study.forward_fill(np.where(np.vstack([np.ones_like(mask[:1]), mask[1:]]), pixels, np.nan))
    results["original study: plain fit, NumPy, MSE"] = fit_images_per_s(
        keras, lambda e, c: original_study.fit(plain, x, filled, e, args.batch_size, validation_split=0.0, callbacks=c),
        args.images, args.epochs, args.repeats)

    gpus = gpu_names(args.framework)
    precisions = args.precisions
    if precisions is None:
        precisions = ["mixed_float16"] if gpus else (["mixed_bfloat16"] if "avx512_bf16" in cpu_flags() else [])
    if args.framework == "tf":
        from kpbench.train.inputs import training_feed

        feed = training_feed(x, pack_targets(pixels, mask), args.batch_size, seed=0)  # as a run's fit reads it
        source = "tf.data"
        xla = [False, True] if (bool(gpus) if args.xla is None else args.xla) else [False]
    else:
        feed = {"x": x, "y": pack_targets(pixels, mask), "batch_size": args.batch_size, "shuffle": True}
        source, xla = "NumPy", [True]
    for precision in ["float32", *precisions]:
        for jit_compile in xla:
            keras.utils.set_random_seed(0)
            model = compile_model(build_model(REFERENCE_MODEL, precision, keras), 1e-3, 3.0, jit_compile, keras)
            results[f"kpbench: {source}, masked loss, {precision}{', XLA' if jit_compile else ''}"] = fit_images_per_s(
                keras, lambda e, c, m=model: m.fit(**feed, epochs=e, callbacks=c, verbose=0),
                args.images, args.epochs, args.repeats)

    if args.framework == "tf":  # the feed a run read before one iterator per fit, side by side (RESULTS §11)
        from kpbench.train.inputs import make_dataset

        keras.utils.set_random_seed(0)
        model = compile_model(build_model(REFERENCE_MODEL, "float32", keras), 1e-3, 3.0, False, keras)
        finite = make_dataset(x, pack_targets(pixels, mask), args.batch_size, shuffle_seed=0)
        results["kpbench: finite tf.data (an iterator per epoch), float32"] = fit_images_per_s(
            keras, lambda e, c: model.fit(finite, epochs=e, callbacks=c, verbose=0), args.images, args.epochs,
            args.repeats)
    print(f"machine: {machine_line(args.framework)}; GPU: {', '.join(gpus) or False}")
    if args.framework == "keras3-jax":
        print("JAX compiles every path with XLA, the original study's plain fit included")
    print(f"FP32 matmul {args.matmul_size}^2: {peak:.1f} GFLOP/s (median of {args.repeats})"
          f"{'; TensorFloat-32 allowed, as by default' if gpus else ''}")
    print(f"model: {flops / 1e9:.3f} GFLOP per training image; {args.images} images, batch {args.batch_size}, "
          f"{args.epochs} timed epochs, median of {args.repeats}")
    baseline = results["original study: plain fit, NumPy, MSE"][0]
    for name, (step_images_per_s, wall_images_per_s, tail_s) in results.items():
        gflops = step_images_per_s * flops / 1e9
        print(f"{name:48s} {step_images_per_s:7.1f} img/s {gflops:7.1f} GFLOP/s "
              f"{100 * gflops / peak:5.1f} % of matmul  {step_images_per_s / baseline:4.2f}x original  "
              f"(fit wall time: {wall_images_per_s:.1f} img/s; returned {tail_s:.2f} s after training ended)")


if __name__ == "__main__":
    main()
