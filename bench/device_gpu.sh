#!/usr/bin/env bash
# The GPU benchmarks on a lent machine that has JAX (CUDA 13) but no TensorFlow, and no network:
# TensorFlow's GPU build needs CUDA 12 libraries, gigabytes of wheels, so this runs Keras 3 on JAX.
# Keras 3's few small wheels come along in .whl (ignored by git; the run tool carries it):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     keras==3.15.1 namex==0.1.0 optree==0.20.0 packaging==26.4 typing-extensions==4.16.0 \
#     pyyaml==6.0.4 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 \
#     rpds-py==2026.9.1 attrs==26.1.0          # kpbench.core.settings reads the configuration with these
#
# Then bench/throughput.py (small) and bench/gpu.py's full workload with each registered model, each
# under a timeout, so the whole script ends within about 8 minutes. The log and the runs' files land
# under $OUT.
set -uo pipefail
OUT=${OUT:?set OUT to the folder that comes back}

main() {
    local failed=0
    # A wheel is a zip file: unpacked as it is if this Python has no pip.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
        python3 -c "import sys, zipfile; [zipfile.ZipFile(w).extractall('/tmp/site') for w in sys.argv[1:]]" .whl/*.whl ||
        return 1
    export PYTHONPATH=/tmp/site:$PWD/src KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    nvidia-smi -L
    timeout 120 python3 bench/throughput.py --framework keras3-jax --images 1280 --epochs 3 --repeats 3 \
        --matmul-size 8192 --precisions mixed_bfloat16 mixed_float16 || { echo "throughput: exit $?"; failed=1; }
    timeout 200 python3 bench/gpu.py --framework keras3-jax --matmul-size 8192 --max-seconds 120 \
        --out "$OUT/gpu-run" || { echo "gpu: exit $?"; failed=1; }
    timeout 160 python3 bench/gpu.py --framework keras3-jax --matmul-size 8192 --max-seconds 90 \
        --model separable_cnn --out "$OUT/gpu-run-separable" || { echo "gpu separable: exit $?"; failed=1; }
    return $failed
}

mkdir -p "$OUT"
main 2>&1 | tee "$OUT/log.txt"
