"""Any machine, not only ours: hardware is read from what a machine's OS and driver print, never
recognised by its name, and every stage accepts a run on a device no table names.

The descriptions under tests/fixtures/hardware/ are other machines' real /proc/cpuinfo, lscpu, macOS
sysctl and nvidia-smi output, copied from public bug reports, test suites and hardware listings;
SOURCES.md and GPU_SOURCES.md there say where each came from. The one constructed description is
the CPU with an empty name (EMPTY_NAME below).
"""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from kpbench.core.files import read_json, write_json
from kpbench.machine.cpu_peaks import cpu_peak
from kpbench.machine.cpu_settings import (
    CHOSEN_ENV,
    ONEDNN_ENV,
    choose_tensorflow_settings,
    onednn_rule,
    settings_record,
)
from kpbench.machine.description import HARDWARE_ENV, describe_cpu, parse_nvidia_smi, read_sources
from kpbench.machine.detect import detect_hardware
from kpbench.machine.device_peaks import checked, mfu, peak_for, resolve_gpu, resolve_hardware
from kpbench.train.run_writer import machine_peak
from workflow import REPO, checkout, copy_setup, snakemake

HARDWARE = REPO / "tests" / "fixtures" / "hardware"
# Constructed (the issue allows this one): a CPU whose OS gives it no name, as some VMs do.
EMPTY_NAME = ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 999\nmodel name\t: \n"
              "cpu MHz\t\t: 2000.000\nphysical id\t: 0\ncore id\t\t: 0\ncpu cores\t: 1\nsiblings\t: 1\n"
              "flags\t\t: fpu sse sse2 avx avx2 fma\n")


def _cpu(folder, *files):
    return describe_cpu({name: (HARDWARE / folder / name).read_text() for name in files})


@pytest.mark.parametrize("folder, files, expected", [
    ("xeon-amx", ("cpuinfo",), {"vendor": "GenuineIntel", "family": 6, "model": 143, "architecture": None}),
    ("xeon-amx", ("lscpu",), {"vendor": "GenuineIntel", "model": 143, "physical_cores": 90, "threads_per_core": 2,
                              "logical_cpus": 180, "hypervisor": "KVM"}),
    ("epyc", ("cpuinfo",), {"vendor": "AuthenticAMD", "family": 25, "model": 17}),
    ("epyc", ("lscpu",), {"vendor": "AuthenticAMD", "family": 25, "model": 17, "threads_per_core": 2}),
    ("xeon-avx2", ("cpuinfo",), {"vendor": "GenuineIntel", "family": 6, "model": 79}),
    ("xeon-avx2", ("lscpu",), {"vendor": "GenuineIntel", "model": 79, "logical_cpus": 2}),
    ("neoverse-v1", ("cpuinfo",), {"vendor": "ARM", "model": 0xD40}),
    ("neoverse-v1", ("lscpu",), {"architecture": "aarch64", "vendor": "ARM", "logical_cpus": 16}),
    ("apple-m2", ("sysctl",), {"vendor": "Apple", "model_name": "Apple M2", "physical_cores": 8, "logical_cpus": 8,
                               "memory_bytes": 17179869184}),
])
def test_a_cpu_is_described_from_what_its_os_prints(folder, files, expected):
    cpu = describe_cpu({name: (HARDWARE / folder / name).read_text() for name in files})
    assert {key: cpu[key] for key in expected} == expected


def test_the_isa_features_that_set_flop_per_cycle_are_read_per_architecture():
    amx, avx2 = _cpu("xeon-amx", "cpuinfo")["isa"], _cpu("xeon-avx2", "cpuinfo")["isa"]
    assert amx["amx_bf16"] and amx["amx_tile"] and amx["avx512f"] and amx["avx512_bf16"]
    assert avx2["avx2"] and avx2["fma"] and not avx2["avx512f"] and not avx2["amx_bf16"]
    arm = _cpu("neoverse-v1", "cpuinfo")["isa"]
    assert arm["neon"] and arm["sve"] and not any(arm[x86] for x86 in ("sse2", "avx", "avx2", "avx512f"))
    m2 = _cpu("apple-m2", "sysctl")["isa"]
    assert m2["neon"] and m2["bf16"] and not m2["avx2"]
    assert describe_cpu({})["isa"] == {feature: None for feature in m2}  # nothing read: unknown, not False


@pytest.mark.parametrize("folder, files, microarchitecture, flop", [
    ("xeon-amx", ("cpuinfo",), "Sapphire/Emerald Rapids", 64),
    ("epyc", ("cpuinfo",), "Zen 4", 32),
    ("xeon-avx2", ("cpuinfo",), "Broadwell", 32),
    ("neoverse-v1", ("cpuinfo",), "Neoverse V1", 32),
    ("apple-m2", ("sysctl",), "Apple M2", 32),
])
def test_a_cpus_peak_is_derived_from_its_ids_cores_and_clock(folder, files, microarchitecture, flop):
    cpu = _cpu(folder, *files)
    peak = cpu_peak(cpu)
    assert peak["kind"] == "derived" and microarchitecture in peak["source"]
    assert peak["fp32"] == pytest.approx(cpu["physical_cores"] * peak["clock_mhz"] * flop / 1e6)


def test_a_cpu_with_no_name_and_unknown_ids_is_derived_from_its_flags_at_its_nominal_clock():
    cpu = describe_cpu({"cpuinfo": EMPTY_NAME})
    assert cpu["model_name"] is None and cpu["isa"]["avx2"]
    peak = cpu_peak(cpu)
    assert peak["device"].startswith("unnamed CPU") and peak["fp32"] == pytest.approx(1 * 2000 * 32 / 1e6)
    assert "nominal clock" in peak["source"]
    assert cpu_peak(describe_cpu({}))["kind"] == "unknown"  # no cores, clock or flags: unknown, no error


@pytest.mark.parametrize("folder, files, onednn", [
    ("xeon-amx", ("cpuinfo",), "1"), ("epyc", ("cpuinfo",), "1"), ("xeon-avx2", ("cpuinfo",), "1"),
    ("neoverse-v1", ("cpuinfo",), None), ("apple-m2", ("sysctl",), None),
])
def test_onednn_is_chosen_from_the_isa_and_a_value_the_user_set_is_kept(folder, files, onednn):
    cpu = _cpu(folder, *files)
    environ = {}
    choose_tensorflow_settings(environ, cpu)
    assert environ.get(ONEDNN_ENV) == onednn  # None: TensorFlow's own default stands
    users = {ONEDNN_ENV: "1"}
    choose_tensorflow_settings(users, cpu)
    assert users == {ONEDNN_ENV: "1"}  # the user's, even where it agrees with the rule
    assert onednn_rule(describe_cpu({"cpuinfo": EMPTY_NAME})) == "1"  # no name, AVX2 and FMA: on
    assert onednn_rule(describe_cpu({})) is None  # nothing known: TensorFlow's default


def test_a_run_records_who_set_onednn_and_whether_tensorflow_has_it_on():
    avx2, arm = _cpu("xeon-avx2", "cpuinfo"), _cpu("neoverse-v1", "cpuinfo")
    chosen = {}
    choose_tensorflow_settings(chosen, avx2)
    assert settings_record("tf", chosen, avx2)["source"] == "kpbench's rule, from the CPU's ISA"
    assert settings_record("tf", {ONEDNN_ENV: "1"}, avx2)["source"] == "set in the environment"  # the user's 1
    assert settings_record("tf", {ONEDNN_ENV: "0"}, avx2)["source"] == "set in the environment"
    default = settings_record("tf", {}, arm)
    assert default["source"] == "TensorFlow's default" and default[ONEDNN_ENV] is None
    assert isinstance(default["onednn_opts"], bool)
    assert settings_record("keras3-jax")["onednn_opts"] is None


def test_the_choice_reaches_tensorflow_in_a_fresh_process():
    code = ("import json, kpbench, tensorflow\n"
            "from kpbench.machine.cpu_settings import onednn_rule, settings_record, this_cpu\n"
            "print(json.dumps([onednn_rule(this_cpu()), settings_record('tf')]))")
    environ = {key: value for key, value in os.environ.items() if key not in (ONEDNN_ENV, CHOSEN_ENV)}
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    rule, record = json.loads(done.stdout.splitlines()[-1])
    if rule == "1":  # this CPU has AVX2 and FMA: kpbench turned oneDNN on, and TensorFlow has it on
        assert record["onednn_opts"] is True and record["source"] == "kpbench's rule, from the CPU's ISA"
    else:
        assert record["source"] == "TensorFlow's default"


@pytest.mark.parametrize("folder, name, device, memory_gib", [
    ("gpu-t4", "Tesla T4", "Tesla T4", 14.75),
    ("gpu-h100", "NVIDIA H100 80GB HBM3", "NVIDIA H100", 79.6),
    ("gpu-a10g", "NVIDIA A10G", "NVIDIA A10G", 22.5),
    ("gpu-rtx6000ada", "NVIDIA RTX 6000 Ada Generation", None, 48.0),
])
def test_every_nvidia_smi_format_names_the_gpu_and_its_memory(folder, name, device, memory_gib):
    for path in sorted((HARDWARE / folder).glob("nvidia-smi*")):
        gpus = parse_nvidia_smi(path.read_text())
        assert gpus, path
        assert gpus[0]["name"].startswith(name[:24]) and gpus[0]["memory_bytes"] / 2 ** 30 == pytest.approx(
            memory_gib, abs=0.5), path
        resolved = resolve_gpu(gpus[0])
        assert resolved["kind"] == ("datasheet" if device else "unknown") and (resolved["device"] == device or not device)


def test_a_gpu_is_matched_by_product_and_compute_capability_and_else_derived():
    query = parse_nvidia_smi((HARDWARE / "gpu-h100" / "nvidia-smi-query.csv").read_text())[0]
    assert query["compute_capability"] == "9.0" and query["max_sm_clock_mhz"] == 1980
    assert resolve_gpu(query)["device"] == "NVIDIA H100"
    assert resolve_gpu({**query, "compute_capability": "8.0"})["kind"] == "unknown"  # the name alone never decides
    ada = parse_nvidia_smi((HARDWARE / "gpu-rtx6000ada" / "nvidia-smi-q.txt").read_text())[0]
    assert len(parse_nvidia_smi((HARDWARE / "gpu-rtx6000ada" / "nvidia-smi-q.txt").read_text())) == 8
    # with the SM count and compute capability the framework reports (142 SMs, 8.9): 2 x 128 x SMs x clock
    derived = resolve_gpu({**ada, "compute_capability": "8.9", "sm_count": 142})
    assert derived["kind"] == "derived" and derived["fp32"] == pytest.approx(2 * 128 * 142 * 3105 / 1e6)
    assert derived["class"] == "gpu-ada" and peak_for(derived, "mixed_float16") == derived["fp32"]


def test_a_peak_below_the_measured_matmul_is_wrong_and_mfu_is_never_above_one():
    assert checked(0.2, 329.0) == (None, checked(0.2, 329.0)[1]) and "wrong peak" in checked(0.2, 329.0)[1]
    assert checked(0.5, 329.0) == (0.5, None)
    assert mfu(233.0, 0.2048) is None and mfu(233.0, 0.5) == pytest.approx(0.466) and mfu(233.0, None) is None
    # the issue's machine: the table's Sapphire Rapids vCPU peak (2 x 0.1024) under its 329 GFLOP/s matmul
    cpu = _cpu("xeon-amx", "lscpu")
    hardware = {"cpu_cores": 2, "gpu_count": 0, "cpu": {**cpu, "physical_cores": 1, "logical_cpus": 2}}
    peak = machine_peak({"backend": "local", "workers": 1}, hardware, "float32", 329.0)
    assert peak["peak_tflops"] is None and peak["peak_note"]


def test_recorded_descriptions_are_read_in_place_of_this_machines(monkeypatch):
    monkeypatch.setenv(HARDWARE_ENV, str(HARDWARE / "neoverse-v1"))
    hardware = detect_hardware("tf")
    assert hardware["machine"] == "aarch64" and hardware["cpu"]["vendor"] == "ARM"
    assert hardware["described_from"].endswith("neoverse-v1") and hardware["gpu_count"] == 0
    assert resolve_hardware(hardware)["kind"] == "derived"
    monkeypatch.setenv(HARDWARE_ENV, str(HARDWARE / "gpu-h100"))
    hardware = detect_hardware("tf")
    assert hardware["gpu_names"] == ["NVIDIA H100 80GB HBM3"] and hardware["gpus"][0]["compute_capability"] == "9.0"
    monkeypatch.setenv(HARDWARE_ENV, str(HARDWARE / "no-such-machine"))
    with pytest.raises(FileNotFoundError, match="no-such-machine"):
        read_sources()


@pytest.mark.parametrize("folder, vendor_words", [
    ("xeon-amx", "the same vendor and generation"), ("epyc", "the same vendor and generation"),
    ("xeon-avx2", "the same vendor, another generation"), ("neoverse-v1", "another vendor"),
    ("apple-m2", "another vendor"),
])
def test_the_stand_in_price_of_this_machine_follows_this_machine(monkeypatch, folder, vendor_words):
    from kpbench.core.settings import load_config
    from kpbench.forecast.predict import read_catalogue

    monkeypatch.setenv(HARDWARE_ENV, str(HARDWARE / folder))
    local = {row["name"]: row for row in load_config([REPO / "config" / "config.yaml"])["instances"]}
    cpu = describe_cpu(read_sources())
    chosen = local["local"]["price_source"].split(": ", 1)[1].split(" ")[0]
    row = {r["instance_type"]: r for r in read_catalogue(REPO / "config" / "catalogue.csv")}[chosen]
    assert vendor_words in local["local"]["price_source"]
    assert local["local"]["usd_per_hour"] == pytest.approx(row["usd_per_hour"] * cpu["logical_cpus"] / row["vcpus"])
    assert local["local-2w"]["usd_per_hour"] * 2 == pytest.approx(local["local"]["usd_per_hour"])
    expected = {"GenuineIntel": "c7i.", "AuthenticAMD": "c7a."}.get(cpu["vendor"])
    assert expected is None or chosen.startswith(expected) or "another generation" in vendor_words


@pytest.fixture(scope="module")
def foreign_tree(tmp_path_factory):
    """The tiny pipeline end to end, its runs describing the KVM Xeon with AMX (lscpu alone) in place
    of this machine: hardware is faked where it is read, nothing is edited afterwards."""
    root = checkout(tmp_path_factory.mktemp("foreign"))
    kvm = root / "described"
    kvm.mkdir()
    shutil.copy(HARDWARE / "xeon-amx" / "lscpu", kvm / "lscpu")
    snakemake(root, "--cores", "2", "paper", "--configfile", "tiny.yaml", "--config", "repeats=1",
              env={HARDWARE_ENV: str(kvm)})
    return root


def _mfus(results, derived):
    """Every MFU a table or figure of the paper prints, from the files they are drawn from."""
    summary = pd.read_csv(results / "summary.csv")["mfu"].dropna().tolist()
    runs = [run["performance"]["mfu"] for run in read_json(derived / "analysis.json")["runs"]]
    predicted = read_json(derived / "forecast.json")
    rows = [r["mfu"] for r in predicted["validation"]] + [r["mfu"] for r in predicted["catalogue"]]
    return [value for value in summary + runs + rows if value is not None]


def _pdf_text(tree):
    return subprocess.run(["pdftotext", str(tree / "paper" / "build" / "paper.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout


def test_the_tiny_pipeline_runs_to_a_pdf_on_a_foreign_machines_description(foreign_tree):
    run = read_json(foreign_tree / "results" / "runs" / "local" / "r1" / "run.json")
    assert run["hardware"]["cpu"]["model_name"] == "Intel(R) Xeon(R) Platinum 8457C"
    assert run["performance"]["peak_origin"] == "derived" and "Sapphire" in run["performance"]["peak_source"]
    assert "c7i." in run["instance"]["price_source"]  # priced as the nearest current Intel type
    assert all(0 < value <= 1 for value in _mfus(foreign_tree / "results", foreign_tree / "results"))
    text = _pdf_text(foreign_tree)
    assert "Platinum 8457C" in text and "derived" in text


# Each group of descriptions goes to the four runs of one copy of the tiny pipeline's results.
GROUPS = {
    "x86 and Arm servers": (("xeon-amx", "xeon-avx2", "epyc", "neoverse-v1"), {"derived"}),
    "a laptop, a nameless CPU and GPUs with and without a datasheet": (
        ("apple-m2", None, "gpu-rtx6000ada", "gpu-h100"), {"derived", "unknown", "datasheet"}),
    "a GPU by its table and full query": (("gpu-a10g", "gpu-t4", "gpu-h100", "gpu-rtx6000ada"),
                                          {"datasheet", "unknown"}),
}


def _describe(folder):
    if folder is None:
        return {"cpuinfo": EMPTY_NAME}
    return {path.name: path.read_text() for path in (HARDWARE / folder).iterdir()}


@pytest.mark.parametrize("group", GROUPS)
def test_analysis_predict_and_paper_accept_runs_on_every_description(group, tree, tmp_path):
    from kpbench.machine.detect import describe_gpus_seen

    copy = tmp_path / "tree"
    shutil.copytree(tree, copy, symlinks=True)
    paths = sorted((copy / "results" / "runs").glob("*/r*/run.json"))
    folders, expected = GROUPS[group]
    assert len(paths) == len(folders)
    for path, folder in zip(paths, folders):
        run, sources = read_json(path), {**_describe(folder), "recorded": str(folder)}
        cpu, gpus = describe_cpu(sources), describe_gpus_seen(sources, "tf")
        run["hardware"] = {**run["hardware"], "cpu": cpu, "cpu_model": cpu["model_name"], "gpus": gpus,
                           "gpu_count": len(gpus), "gpu_names": [gpu["name"] for gpu in gpus]}
        performance = run["performance"]
        performance.update(machine_peak(run["instance"], run["hardware"], performance["precision"],
                                        performance["matmul_gflops"]))
        performance["mfu"] = mfu(performance["achieved_gflops"], performance["peak_tflops"])
        write_json(path, run)
    snakemake(copy, "--cores", "1", "paper", "--configfile", "tiny.yaml")
    values = _mfus(copy / "results", copy / "results")
    assert values and all(0 < value <= 1 for value in values), values
    analysis = read_json(copy / "results" / "analysis.json")
    origins = {run["performance"]["peak_origin"] for run in analysis["runs"]}
    assert origins == expected
    text = _pdf_text(copy)
    assert "Peak GFLOP/s (origin)" in text and "Provenance" in text
    assert json.loads((copy / "results" / "forecast.json").read_text())["catalogue"]


@pytest.mark.workflow  # a reviewer rebuild through Snakemake
def test_a_stored_campaign_with_a_run_on_an_unknown_device_rebuilds_in_reviewer_mode(tmp_path):
    root = tmp_path / "review"
    root.mkdir()
    for name in ("Snakefile", "rules", "config", "environment.yml"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    shutil.copytree(REPO / "paper", root / "paper", ignore=shutil.ignore_patterns("build"))
    copy_setup(root)
    campaign = sorted((REPO / "campaigns").glob("*/config.yaml"))[-1].parent
    shutil.copytree(campaign, root / "campaigns" / campaign.name)
    # Every run of `local` (each repeat) on a CPU that says nothing but its name.
    for path in sorted((root / "campaigns" / campaign.name / "results" / "runs").glob("local/r*/run.json")):
        run = read_json(path)
        run["hardware"] = {**run["hardware"], "cpu_model": "Mystery Processor 9000", "cpu": describe_cpu({})}
        performance = run["performance"]  # what the run would have measured its MFU against
        performance.update(machine_peak(run["instance"], run["hardware"], performance["precision"],
                                        performance["matmul_gflops"]))
        performance["mfu"] = mfu(performance["achieved_gflops"], performance["peak_tflops"])
        write_json(path, run)
    snakemake(root, "--cores", "1", "paper", "--configfile", f"campaigns/{campaign.name}/config.yaml")
    text = _pdf_text(root)
    assert "Mystery Processor 9000" in text
    predicted = read_json(root / "paper" / "build" / "forecast.json")
    mystery = [r for r in predicted["validation"] if r["device"].startswith("Mystery")]
    assert mystery and all(r["mfu"] is None for r in mystery)  # its own device, calibrated on its measured roof
