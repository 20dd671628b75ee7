"""End to end: the real Snakefile on a tiny configuration, in a fresh working tree."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kpbench.core import layout
from workflow import REPO, checkout, planned_jobs, snakemake

# Runs Snakemake, whole pipelines or real clusters: left out of the fast loop (`-m "not workflow"`).
pytestmark = pytest.mark.workflow


def test_paper_target_builds_a_pdf_with_pages(tree):
    pdf = tree / "paper" / "build" / "paper.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert pages >= 3
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "7,266,494" in text and "original study" in text


def test_a_compute_estimate_above_the_step_time_is_reported_not_fatal(tree):
    from kpbench.core.files import read_json

    for repeat in (1, 2):
        wait = read_json(tree / "results" / "runs" / "local-2w" / f"r{repeat}" / "run.json")["cluster"]["wait_estimate"]
        assert wait["compute_step_s"] > wait["median_step_s"] and wait["median_s"] < 0 and not wait["resolved"]
    text = subprocess.run(["pdftotext", str(tree / "paper" / "build" / "paper.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "unresolved" in text and "All-reduce fit per cluster run" in text


def test_training_progress_reaches_the_terminal_and_the_log(tree):
    terminal = (tree / "terminal.txt").read_text()
    for instance in ("local", "local-2w"):
        for repeat in (1, 2):
            assert f"{instance} r{repeat}: epoch 2/2," in terminal
            assert f"{instance} r{repeat}: epoch 2/2," in (tree / "logs" / "train" / instance / f"r{repeat}.log").read_text()
    assert terminal.count("local-2w r1: all-reduce sweep over 2 workers, 4 KiB to 29.1 MB") == 1
    assert "forward fill (the original study's procedure): epoch 2/2, loss" in terminal


def test_summary_has_every_repeat_and_the_original_studys_rows(tree):
    summary = pd.read_csv(tree / "results" / "summary.csv")
    assert list(summary["source"]) == ["kpbench"] * 4 + ["original study"] * 8
    assert list(summary["instance"][:4]) == ["local", "local", "local-2w", "local-2w"]
    assert list(summary["repeat"][:4]) == [1, 2, 1, 2]
    assert list(summary["seed"][:4]) == [1, 2, 1, 2]  # each repeat its own seed
    assert list(summary["workers"][:4]) == [1, 1, 2, 2] and (summary["epochs"][:4] == 2).all()
    for figure in ("sample_faces", "predictions", "learning_curves", "time_cost"):
        assert (tree / "paper" / "build" / "figures" / f"{figure}.pdf").stat().st_size > 1000
    assert all((tree / "logs").rglob("*.log")) and list((tree / "benchmarks").rglob("*.tsv"))


def test_rerunning_one_instance_reruns_only_its_training(tree):
    dry = snakemake(tree, "-n", "--cores", "1", "results/runs/local/r1/run.json", "--forcerun", "train",
                    "--configfile", "tiny.yaml")
    assert planned_jobs(dry.stdout) == {"train": 1}


def test_workflow_lints_clean(tree):
    result = snakemake(tree, "--lint", "--configfile", "tiny.yaml")
    assert "Lints for" not in result.stdout + result.stderr

def test_rebuilding_from_the_same_results_is_byte_identical(tree):
    build = tree / "paper" / "build"
    generated = sorted(build.glob("figures/*.pdf")) + sorted(build.rglob("*.tex"))
    before = {path: path.read_bytes() for path in generated}
    snakemake(tree, "--cores", "1", "paper", "--forcerun", "render_figures", "render_tex",
              "--configfile", "tiny.yaml")
    # Every figure the layout names, and paper.tex with each of its section templates.
    assert {path.stem for path in before if path.suffix == ".pdf"} == set(layout.FIGURES)
    assert len([path for path in before if path.suffix == ".tex"]) == 1 + len(
        list((REPO / "paper" / "templates" / "sections").glob("*.tex.j2")))
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path.name} changed on rebuild"


def test_pipeline_benchmark_times_planning_and_a_rebuild(tree):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "pipeline.py"), "--tree", str(tree),
                             "--repeats", "1", "--configfile", "tiny.yaml"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "snakemake -n paper" in result.stdout and "rebuild figures + LaTeX + PDF" in result.stdout
    # Without the tree's overlay the paper would train the default workload: refused, not timed.
    result = subprocess.run([sys.executable, str(REPO / "bench" / "pipeline.py"), "--tree", str(tree),
                             "--repeats", "1"], capture_output=True, text=True)
    assert result.returncode != 0 and "would also run" in result.stderr and "train" in result.stderr


def test_local_runs_never_overlap_whatever_cores_snakemake_is_given(tmp_path):
    """Each local training holds every core Snakemake has, so with more cores than the machine no two
    runs (and no other job) are ever timed side by side; each run records when it started and ended."""
    from kpbench.core.run_reader import read_run

    root = checkout(tmp_path)
    snakemake(root, "--cores", "4", "results", "--configfile", "tiny.yaml")
    runs = [read_run(path) for path in sorted((root / "results" / "runs").glob("*/r*/run.json"))]
    assert len(runs) == 4 and all(run["contention"]["samples"] >= 2 and not run["resumed"] for run in runs)
    spans = sorted((run["started_at"], run["finished_at"]) for run in runs)  # whole seconds, rounded down
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans


# Which rule each traced command belongs to (kpbench.core.read_trace names a command by its verb;
# a rule-only stage by its rule).
# The rules each command runs in (a command two rules share is checked against what either declares).
COMMAND_RULES = {"fetch": ("fetch_data",), "preprocess": ("preprocess",), "describe-model": ("describe_model",),
                 "forward-fill": ("forward_fill",), "train": ("train", "probe_run"),
                 "worker": ("train", "probe_run", "precision"), "precision": ("precision",),
                 "predict": ("predict",), "original-logs": ("original_logs",),
                 "probe": ("probe_extrapolate", "probe_validation")}


def _declared(tree):
    """{rule: every path any of its jobs declares (inputs, outputs, logs)}, from Snakemake's summary."""
    summary = snakemake(tree, "--detailed-summary", "--cores", "1", "paper", "--configfile", "tiny.yaml").stdout
    lines = [line.split("\t") for line in summary.splitlines() if "\t" in line]
    header, rows = lines[0], lines[1:]
    column = {name: header.index(name) for name in ("output_file", "rule", "log-file(s)", "input-file(s)")}
    declared = {}
    for row in rows:
        paths = declared.setdefault(row[column["rule"]], set())
        paths.add(row[column["output_file"]])
        for key in ("log-file(s)", "input-file(s)"):
            paths |= {path for path in row[column[key]].split(",") if path and path != "-"}
    return declared


def test_every_file_a_step_reads_is_declared_to_its_rule(tree, tmp_path):
    """Each workflow step notes the tree's files it opens for reading (KPBENCH_READ_TRACE); every one
    is an input of its rule (or the rule's own output, or under the run folder a training writes), so
    a change to any of them replans the rule."""
    copy = Path(shutil.copytree(tree, tmp_path / "tree", symlinks=True))
    trace = tmp_path / "reads"
    trace.mkdir()
    env = {"KPBENCH_READ_TRACE": str(trace)}
    downstream = ("describe_model", "forward_fill", "precision", "aggregate", "analyse", "predict", "render_figures",
                  "render_tex")
    snakemake(copy, "--cores", "1", "paper", "--forcerun", *downstream, "--configfile", "tiny.yaml", env=env)
    snakemake(copy, "--cores", "2", "results/runs/local-2w/r1/run.json", "--forcerun", "train",
              "--configfile", "tiny.yaml", env=env)
    snakemake(copy, "--cores", "1", "preprocess", "--forcerun", "fetch_data", "--until", "preprocess",
              "--configfile", "tiny.yaml", env=env)
    declared = _declared(copy)
    records = [json.loads(path.read_text()) for path in sorted(trace.glob("*.json"))]
    steps = {record["step"] for record in records}
    assert {"fetch", "preprocess", "train", "worker", "predict", "describe-model", "forward-fill", "precision",
            "aggregate", "analyse", "render_figures", "render_tex"} <= steps, steps
    undeclared = {}
    for record in records:
        rules = COMMAND_RULES.get(record["step"], (record["step"],))
        rule = "/".join(rules)
        allowed = [path for name in rules for path in declared.get(name, [])]
        # A training reads what its own workers write into its run (probe, precision) folder.
        own = ([path for path in allowed if any(f"/{kind}/" in path for kind in ("runs", "probes", "precision"))]
               if {"train", "precision"} & set(rules) else [])
        extra = [path for path in record["reads"] if path not in allowed
                 and not any(path.startswith(str(Path(o).parent) + "/") for o in own)]
        if extra:
            undeclared.setdefault(rule, set()).update(extra)
    assert not undeclared, undeclared
    assert any("results/summary.csv" in record["reads"] for record in records if record["step"] == "analyse")


EC2 = ("--configfile", "tiny.yaml", "config/aws.yaml", "--config", 'aws={"bucket": "my-bucket"}')
EC2_RUNS = 12  # config/aws.yaml's six current rows, twice each (tiny.yaml: repeats 2)


def test_switching_to_the_ec2_matrix_plans_every_run_on_the_first_call(tree, tmp_path):
    """After a local build the first call with the EC2 matrix planned only a rewrite of the launch
    settings (and ran it, 'done', exit 0); the second planned the matrix."""
    copy = Path(shutil.copytree(tree, tmp_path / "tree", symlinks=True))
    jobs = planned_jobs(snakemake(copy, "-n", "--cores", "8", "results", *EC2).stdout)
    assert jobs.get("train") == EC2_RUNS and jobs.get("plan") == 1 and jobs.get("aws_setup") == 1, jobs
    assert jobs.get("aggregate") == 1


def test_a_replanned_matrix_still_plans_the_runs_it_lacks(tree, tmp_path):
    """A plan that reruns (a new row, a new budget) must not hide the runs still to make below it."""
    copy = Path(shutil.copytree(tree, tmp_path / "tree", symlinks=True))
    for gate in ("plan.json", "aws-setup.json"):
        (copy / "results" / gate).write_text("{}\n")
    jobs = planned_jobs(snakemake(copy, "-n", "--cores", "8", "results", "--forcerun", "plan", *EC2).stdout)
    assert jobs.get("plan") == 1 and jobs.get("train") == EC2_RUNS, jobs
    assert "aws_setup" not in jobs


# Runs last: it corrupts the tree's data.

def test_failed_step_leaves_no_partial_output(tree, tmp_path):
    tree = Path(shutil.copytree(tree, tmp_path / "tree"))  # a private copy: the shared tree stays finished
    raw = tree / "data" / "raw" / "training.csv"
    lines = raw.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace(",", ",abc,", 1)
    raw.write_text("".join(lines))
    result = snakemake(tree, "--cores", "2", "results", "--configfile", "tiny.yaml", check=False)
    assert result.returncode != 0
    assert not (tree / "data" / "processed" / "dataset.npz").exists()
    assert not (tree / "results" / "dataset" / "stats.json").exists()
    assert not [p for p in tree.rglob("*") if ".partial" in p.name]
    log = (tree / "logs" / "preprocess.log").read_text()
    assert "training.csv: malformed CSV: line 4 has 32 fields, expected 31" in log


@pytest.mark.parametrize("overlay, reruns", [
    ("paper:\n  title: Another title\n", False),
    ("aws:\n  region: eu-west-1\n", False),
    ("limits:\n  stall_timeout_s: 1234\n  max_foreign_cpu_share: 0.5\n", False),
    ("workloads:\n  tiny:\n    epochs: 3\n", True),
])
def test_only_what_defines_a_measurement_reruns_training(tree, tmp_path, overlay, reruns):
    """Launch plumbing (limits, AWS) and the paper's text never rerun a finished run; the workload does,
    every run of it."""
    path = tmp_path / "overlay.yaml"
    path.write_text(overlay)
    dry = snakemake(tree, "-n", "--cores", "1", "paper", "--configfile", "tiny.yaml", str(path))
    runs = len(list((tree / "results" / "runs").glob("*/r*/run.json")))
    assert runs == 4
    assert planned_jobs(dry.stdout).get("train", 0) == (runs if reruns else 0), dry.stdout[-2000:]
