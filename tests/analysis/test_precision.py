"""What mixed_bfloat16 saves (kpbench.analysis.precision): measured where a CPU computes bfloat16 in
hardware, told from the run's recorded description, never from the CPU's name."""

import pytest

from kpbench.analysis.precision import BF16, bf16_units, compare
from kpbench.backends.launch import run_instance
from kpbench.core.files import read_json, write_json
from kpbench.machine.description import HARDWARE_ENV, describe_cpu
from kpbench.paper.render import make_environment
from specs import run_inputs
from workflow import REPO

HARDWARE = REPO / "tests" / "fixtures" / "hardware"
INSTANCE = {"name": "box", "backend": "local", "gpus": 0, "workers": 1, "usd_per_hour": 0.5,
            "price_date": "2026-01-01"}
WORKLOAD = {"name": "tiny", "epochs": 2, "batch_size": 8, "max_train_images": 24, "max_val_images": 8}


def _recorded(folder):
    return {"cpu": describe_cpu({path.name: path.read_text() for path in (HARDWARE / folder).iterdir()})}


@pytest.mark.parametrize("folder, units", [
    ("xeon-amx", ["AMX", "AVX512_BF16"]), ("epyc", ["AVX512_BF16"]), ("xeon-avx2", []), ("neoverse-v1", []),
])
def test_bfloat16_units_are_read_from_the_recorded_isa(folder, units):
    """Sapphire Rapids has both, Zen 4 AVX512_BF16 only; an AVX2 Xeon and a Neoverse V1 neither
    (their flags, tests/fixtures/hardware)."""
    assert bf16_units(_recorded(folder)) == units
    assert bf16_units({}) == [] and bf16_units({"cpu": {"isa": {}}}) == []
    assert bf16_units({"avx512_bf16": True}) == ["AVX512_BF16"]  # a record made before the CPU description


def _reference(tmp_path, hardware, precision="float32"):
    run = {"instance": INSTANCE, "repeat": 1, "seed": 1, "hardware": hardware, "training": {"precision": precision},
           "timings": {"train_step_images_per_s": 50.0, "images_per_s": 40.0, "train_s": 10.0},
           "metrics": {"val_rmse_px": 5.0, "val_pck": 0.5}}
    write_json(tmp_path / "run.json", run)
    return tmp_path / "run.json"


@pytest.mark.parametrize("hardware, precision, reason", [
    ({"cpu": {"isa": {"avx2": True}}, "cpu_model": "AMD EPYC 7B13"}, "float32", "neither AMX nor AVX512_BF16"),
    ({"cpu": {"isa": {"amx_bf16": True}}, "gpu_count": 1}, "float32", "trained on a GPU"),
    ({"cpu": {"isa": {"amx_bf16": True}}}, "mixed_bfloat16", "already train in mixed_bfloat16"),
])
def test_nothing_trains_where_bfloat16_would_not_be_measured_and_the_record_says_why(tmp_path, hardware,
                                                                                    precision, reason):
    out = tmp_path / "precision.json"
    assert compare(_reference(tmp_path, hardware, precision), None, None, None, tmp_path / "bf16", out) is None
    result = read_json(out)
    assert result["measured"] is False and reason in result["reason"]
    assert result["reference"]["val_rmse_px"] == 5.0 and result["cpu"] == hardware.get("cpu_model")
    assert (tmp_path / "bf16").is_dir() and not any((tmp_path / "bf16").iterdir())


def test_on_a_cpu_with_bfloat16_units_the_same_run_trains_again_in_mixed_bfloat16(dataset, tmp_path, monkeypatch):
    """A run on the recorded AMX Xeon's description: its twin differs only in precision (same seed,
    rows, epochs), trained through the same launcher, and the ratios are the two runs' own figures."""
    monkeypatch.setenv(HARDWARE_ENV, str(HARDWARE / "xeon-amx"))
    spec, launch = run_inputs(INSTANCE, WORKLOAD, training={"prediction_samples": 4, "peak_matmul_size": 256})
    run_instance(spec, launch, dataset / "dataset.npz", tmp_path / "fp32")
    result = compare(tmp_path / "fp32" / "run.json", spec, launch, dataset / "dataset.npz", tmp_path / "bf16",
                     tmp_path / "precision.json")
    assert result == read_json(tmp_path / "precision.json") and result["measured"]
    assert result["bf16_units"] == ["AMX", "AVX512_BF16"]
    fp32, bf16 = read_json(tmp_path / "fp32" / "run.json"), read_json(tmp_path / "bf16" / "run.json")
    assert (fp32["training"]["precision"], bf16["training"]["precision"]) == ("float32", BF16)
    assert bf16["seed"] == fp32["seed"] and bf16["workload"] == fp32["workload"]
    assert result[BF16]["val_rmse_px"] == bf16["metrics"]["val_rmse_px"]
    assert result["step_speedup"] == pytest.approx(
        bf16["timings"]["train_step_images_per_s"] / fp32["timings"]["train_step_images_per_s"])
    assert result["fit_speedup"] == pytest.approx(bf16["timings"]["images_per_s"] / fp32["timings"]["images_per_s"])


def test_the_paper_states_the_saving_or_why_it_was_not_measured():
    template = make_environment(REPO / "paper" / "templates").get_template("sections/precision.tex.j2")
    measured = {"measured": True, "cpu": "Intel(R) Xeon(R) Platinum 8488C", "bf16_units": ["AMX", "AVX512_BF16"],
                "reference_run": {"instance": "local", "repeat": 1, "seed": 1},
                "reference": {"train_step_images_per_s": 100.0, "images_per_s": 80.0, "val_rmse_px": 4.1,
                              "contention": None},
                BF16: {"train_step_images_per_s": 264.0, "images_per_s": 190.0, "val_rmse_px": 4.3,
                       "contention": {"contended": False}},
                "step_speedup": 2.64, "fit_speedup": 2.375}
    text = template.render(precision=measured)
    assert r"\paragraph{Mixed precision.}" in text and "(AMX, AVX512\\_BF16)" in text
    assert r"\num{2.64}$\times$" in text and r"\num{4.30}" in text and r"\num{4.10}" in text
    assert "contended" not in text
    contended = {**measured, BF16: {**measured[BF16], "contention": {"contended": True}}}
    assert r"The \texttt{mixed\_bfloat16} run was contended" in template.render(precision=contended)
    contended = {**measured, "reference": {**measured["reference"], "contention": {"contended": True}}}
    assert r"The \texttt{FP32} run was contended" in template.render(precision=contended)
    not_measured = {"measured": False, "cpu": "AMD EPYC 7B13", "reason": "this CPU has neither AMX nor AVX512_BF16"}
    text = template.render(precision=not_measured)
    assert "We measured no" in text and "AVX512\\_BF16" in text and "(AMD EPYC 7B13)" in text
    assert "Mixed precision" not in template.render(precision=None) and "Mixed precision" not in template.render()
