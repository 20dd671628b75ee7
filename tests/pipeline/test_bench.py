"""Each benchmark script runs on tiny inputs and prints its figures (CI never times anything)."""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Runs Snakemake, whole pipelines or real clusters: left out of the fast loop (`-m "not workflow"`).
pytestmark = pytest.mark.workflow

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(script, *args):
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_parse_benchmark_compares_both_parsers_on_the_same_pixels():
    out = run("parse.py", "--rows", "12", "--repeats", "1")
    assert "same pixels: True" in out
    assert re.search(r"speed-up: [\d.]+x", out)
    assert "kpbench's phases (the fast reader accepted the file):" in out
    for phase in ("map the file, split it into rows", "leading fields", r"Image fields, \d+ threads?", "Image fields, 1 thread"):
        assert re.search(phase + r".* [\d.]+ s +\d+ minor page faults", out), out


def test_throughput_benchmark_reports_images_per_second_against_the_matmul_peak():
    out = run("throughput.py", "--images", "16", "--epochs", "1", "--repeats", "1", "--batch-size", "8",
              "--matmul-size", "128", "--precisions", "mixed_bfloat16", "--xla")
    assert re.search(r"FP32 matmul 128\^2: [\d.]+ GFLOP/s", out)
    for name in ("original study: plain fit", "kpbench: tf.data, masked loss, float32", "mixed_bfloat16",
                 "float32, XLA", "mixed_bfloat16, XLA"):
        assert re.search(re.escape(name) + r".* [\d.]+ img/s .* % of matmul .*returned [\d.]+ s after training ended",
                         out), out


def test_cpu_settings_benchmark_sets_onednn_per_process_and_compares_the_losses():
    out = run("cpu_settings.py", "--images", "16", "--epochs", "1", "--rounds", "1", "--matmul-size", "128")
    for setting in ("oneDNN off", "oneDNN on", "oneDNN on, 1 inter-op thread"):
        assert re.search(re.escape(setting) + r": FP32 matmul 128\^2 [\d.]+ GFLOP/s", out), out
        assert re.search(re.escape(setting) + r": kpbench: tf.data, masked loss, float32 +step +[\d.]+ img/s", out), out
    before = re.search(r"loss before training: oneDNN off ([\d.]+) ; oneDNN on ([\d.]+) ;", out)
    assert before and float(before[1]) == pytest.approx(float(before[2]), rel=1e-4)  # the same model, either way
    assert re.search(r"loss per epoch: oneDNN off [\d.]+; oneDNN on [\d.]+", out), out
    assert re.search(r"after training: off against on [\d.e+-]+, seed 0 against seed 1 [\d.e+-]+", out), out


def test_onednn_profile_sums_each_kernel_per_step_and_rates_the_convolutions():
    out = run("onednn_profile.py", "--images", "16", "--batch-size", "8", "--steps", "3", "--matmul-size", "128")
    assert re.search(r"oneDNN: oneDNN v[\d.]+.*; TF_ENABLE_ONEDNN_OPTS=1", out), out
    assert "median of 2 steps after the first" in out
    assert re.search(r"step: [\d.]+ ms wall; oneDNN's primitives [\d.]+ ms summed", out), out
    for propagation in ("forward_training", "backward_data", "backward_weights"):
        assert re.search(r"^convolution +" + propagation + r" +\S+ +[\d.]+ ms +[\d.]+ % +[\d.]+ GFLOP/s", out, re.M), out


def test_onednn_profile_reads_steps_and_convolution_sizes_from_onednn_lines():
    profile = _bench_module("onednn_profile")
    conv = ("onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32::blocked:acdb"
            "::f0 dst:f32,attr-scratchpad:user,alg:convolution_direct,"
            "mb64_ic1oc32_ih96oh94kh3sh1dh0ph0_iw96ow94kw3sw1dw0pw0,{ms}")
    lines = [conv.format(ms=2.0), f"{profile.STEP_MARK} 10.0", conv.format(ms=1.5), conv.format(ms=0.5),
             "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32 dst:f32,,,64x32,0.25",
             "onednn_verbose,v1,info,cpu,isa:Intel AVX2", f"{profile.STEP_MARK} 10.004"]
    (first, first_wall), (second, second_wall) = profile.parse_steps(lines)
    flop = 2 * 64 * 1 * 32 * 94 * 94 * 3 * 3 / 1e9
    key = ("convolution", "forward_training", "brg_conv_fwd:avx2")
    assert first == {key: [2.0, pytest.approx(flop)]} and first_wall is None
    assert second[key] == [2.0, pytest.approx(2 * flop)] and second[("reorder", "undef", "jit:uni")] == [0.25, 0.0]
    assert second_wall == pytest.approx(4.0)
    assert profile.conv_gflop("g32mb8_ic32oc32_ih10oh8kh3sh1dh0ph0_iw10ow8kw3sw1dw0pw0") == pytest.approx(
        2 * 8 * 32 * 32 * 8 * 8 * 9 / 32 / 1e9)
    assert math.isnan(profile.conv_gflop("a shape this script does not read"))  # unknown, not understated


@pytest.mark.parametrize("machine, expected", [
    ("xeon-amx", "Intel(R) Xeon(R) Platinum 8457C (vendor GenuineIntel family 6 model 143, 90 cores x 2 threads; "
                 "sse2 avx avx2 fma avx512f avx512_bf16 avx512_fp16 amx_tile amx_bf16)"),
    ("neoverse-v1", "aarch64 (vendor ARM family 8 model 3392, 16 cores x 1 threads; neon sve bf16)"),
    ("apple-m2", "Apple M2 (vendor Apple family 3660830781, 8 cores x 1 threads; neon bf16)"),
])
def test_the_machine_line_describes_a_recorded_cpu_from_its_record(monkeypatch, machine, expected):
    monkeypatch.setenv("KPBENCH_HARDWARE", str(Path(__file__).resolve().parents[1] / "fixtures" / "hardware" / machine))
    assert _bench_module("common").machine_line("tf").startswith(expected + "; Python ")


def _bench_module(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_benchmark_times_both_paths_in_fresh_processes():
    out = run("init.py", "--rows", "12", "--repeats", "1")
    assert re.search(r"original study .* median [\d.]+ s", out)
    assert re.search(r"kpbench .* median [\d.]+ s", out)


def test_gpu_benchmark_runs_kpbench_training_and_compares_with_the_t4(tmp_path):
    out = run("gpu.py", "--rows", "20", "--epochs", "1", "--batch-size", "8", "--precision", "float32",
              "--jit-compile", "--out", str(tmp_path))
    assert re.search(r"train [\d.]+ s, [\d.]+ img/s", out) and "Tesla T4" in out
    assert "float32, XLA" in out
    run_record = json.loads((tmp_path / "run.json").read_text())
    assert run_record["training"]["jit_compile"] is True
    # the folder is a measured row for kpbench predict: the run and its model's description
    from kpbench.forecast.predict import _measured_models

    assert list(_measured_models([tmp_path / "run.json"], [run_record])) == ["reference_cnn"]


def test_cluster_benchmark_compares_one_and_two_workers():
    out = run("cluster.py", "--images", "32", "--global-batch", "8", "--epochs", "1", "--repeats", "1")
    assert re.search(r"1 worker: +[\d.]+ img/s", out)
    assert re.search(r"2 workers \(loopback\): +[\d.]+ img/s", out)
    assert re.search(r"scaling efficiency [\d.]+", out)


def test_allreduce_benchmark_sweeps_a_loopback_cluster_beside_the_copy_bandwidth():
    out = run("allreduce.py", "--largest-bytes", "65536", "--calls", "3", "--repeats", "1")
    assert re.search(r"memory copy: [\d.]+ GB/s", out)
    sizes = re.findall(r"^ +([\d,]+) +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+%", out, flags=re.M)
    assert [int(s.replace(",", "")) for s in sizes] == [4096, 8192, 16384, 32768, 65536]
    assert "alpha-beta fit: latency" in out


def test_batch_sweep_times_each_batch_size_and_fits_its_floor(tmp_path):
    out = run("batch_sweep.py", "--batches", "4", "8", "--steps", "2", "--repeats", "1", "--out", str(tmp_path))
    assert re.search(r"batch +4: +[\d.]+ ms/step", out) and re.search(r"batch +8: +[\d.]+ ms/step", out)
    assert re.search(r"floor \(step time at batch 0, least squares\): -?[\d.]+ ms", out)
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert [row["batch"] for row in sweep["batches"]] == [4, 8] and sweep["device_kind"] == "cpu"
    # a stack's sweep on its device kind, as predict reads it
    from kpbench.forecast.calibration import SOFTWARE
    from kpbench.forecast.rental import read_sweep

    assert read_sweep(tmp_path / "sweep.json", SOFTWARE)["origin"] == SOFTWARE["tf"]
