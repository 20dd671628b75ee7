"""Benchmark 6: the original study's full workload on a GPU — 7,049 images, 100 epochs, batch 64.

Runs kpbench's own training (the `train` stage's code) on synthetic faces in Kaggle's schema with
mixed_float16 when a GPU is present, and prints wall time and images/s beside the original study's
T4 (595 s of training). Where TensorFlow is not installed it trains with Keras 3 on JAX
(kpbench.model.keras3), which always compiles the step with XLA. Smaller settings check that the
script works anywhere.

    python bench/gpu.py                                   # the full workload
    python bench/gpu.py --rows 60 --epochs 1 --precision float32
    python bench/gpu.py --framework keras3-jax --max-seconds 240 --out gpu-run

With --out, the folder holds the run's files and model.json: copied to bench/measured/<date-machine>/,
it is a measured row of `kpbench predict`.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line  # noqa: E402

from kpbench.core.files import write_json  # noqa: E402
from kpbench.core.layout import MEASURED_MODEL_FILE  # noqa: E402
from kpbench.machine.detect import FRAMEWORKS, default_framework  # noqa: E402
from kpbench.model.registry import MODEL_NAMES, REFERENCE_MODEL  # noqa: E402

ORIGINAL_T4_TRAIN_S = 595.34
ORIGINAL_TRAIN_IMAGES, ORIGINAL_EPOCHS = 6344, 100


def describe_model(name, framework):
    """The model's description, built with the framework that trained it."""
    if framework == "keras3-jax":
        from kpbench.model.keras3 import describe_model as describe
    else:
        from kpbench.model.registry import describe_model as describe
    return describe(name)


def bench_spec(gpus, epochs, batch_size, training, model):
    """The run spec of config/config.yaml's full workload (schema defaults filled) on this machine,
    every image, with `training` settings over the configured ones."""
    from kpbench.core import settings

    config = settings.load_config([Path(__file__).resolve().parents[1] / "config" / "config.yaml"])
    spec = settings.run_spec({**config, "workload": "full"}, config["instances"][0]["name"], 1)
    # The configured local row made this machine's: not priced.
    spec["instance"].update(name="bench-gpu", vcpus=None, gpu_model=gpus[0] if gpus else None, gpus=len(gpus),
                            usd_per_hour=None, price_date=None, price_source="", note=None)
    spec["workload"].update(epochs=epochs, batch_size=batch_size, model=model)
    spec["training"].update(training)
    return spec


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=7049)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default=None, help="default: mixed_float16 on a GPU, else float32")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile the training step with XLA (compare with bench/throughput.py --xla first); "
                             "keras3-jax always does")
    parser.add_argument("--framework", choices=FRAMEWORKS, default=default_framework(),
                        help="default: tf where TensorFlow is installed, else keras3-jax")
    parser.add_argument("--max-seconds", type=float,
                        help="end training after the epoch past which another would overrun this")
    parser.add_argument("--matmul-size", type=int, help="side of the matmul peak (default: kpbench's 4096)")
    parser.add_argument("--model", choices=MODEL_NAMES, default=REFERENCE_MODEL,
                        help="a registered model (kpbench.model.registry.MODELS); default the original study's CNN")
    parser.add_argument("--out", type=Path, help="keep the run's files here")
    args = parser.parse_args()

    from kpbench.data.preprocess import preprocess
    from kpbench.data.synthetic import write_synthetic_csvs
    from kpbench.machine.detect import gpu_names
    from kpbench.train.run import run_training

    print(f"framework: {args.framework}", flush=True)
    gpus = gpu_names(args.framework)
    precision = args.precision or ("mixed_float16" if gpus else "float32")
    jit_compile = args.jit_compile or args.framework == "keras3-jax"
    # Extra keys only where set, so a default TensorFlow run keeps its configuration hash.
    extra = {**({"framework": args.framework} if args.framework != "tf" else {}),
             **({"peak_matmul_size": args.matmul_size} if args.matmul_size else {})}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        write_synthetic_csvs(scratch, n_train=args.rows, n_test=2, seed=1)
        preprocess(scratch, scratch / "dataset.npz", scratch / "stats.json", scratch / "samples.npz", 0.1, 0)
        spec = bench_spec(gpus, args.epochs, args.batch_size, {"precision": precision, "jit_compile": jit_compile,
                                                               "prediction_samples": 4, **extra}, args.model)
        run = run_training(spec, scratch / "dataset.npz", args.out or scratch / "run", max_seconds=args.max_seconds)
    if args.out:  # a measured row for kpbench predict: the run and the description of the model it trained
        write_json(args.out / MEASURED_MODEL_FILE, describe_model(args.model, args.framework))
    t, workload = run["timings"], run["workload"]
    print(f"machine: {machine_line(args.framework)}; GPUs: {', '.join(gpus) or 'none'}; precision {precision}"
          f"{', XLA' if jit_compile else ''}")
    print(f"workload: {workload['model']}, {workload['train_images']} training images x {workload['epochs']} epochs "
          f"(of {workload['epochs_requested']}), batch {args.batch_size}")
    print(f"init {t['init_s']:.1f} s, train {t['train_s']:.1f} s, {t['images_per_s']:.1f} img/s "
          f"(training steps alone {t['train_step_images_per_s']:.1f} img/s), "
          f"validation RMSE {run['metrics']['val_rmse_px']:.2f} px")
    original_images_per_s = ORIGINAL_TRAIN_IMAGES * ORIGINAL_EPOCHS / ORIGINAL_T4_TRAIN_S
    print(f"original study, Tesla T4: 595.3 s of training ({original_images_per_s:.1f} img/s) "
          f"-> {t['images_per_s'] / original_images_per_s:.2f}x")
    print(json.dumps({"performance": run["performance"]}))


if __name__ == "__main__":
    main()
