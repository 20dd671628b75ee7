"""Analysis never fails on an honest value: figures and paper over run sets made by the real tiny
pipeline, then edited to carry each value a run can legitimately record. Only a malformed record
is an error, and that error names the file and the field."""

import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from kpbench import KpbenchError
from kpbench.analysis.aggregate import summarise
from kpbench.analysis.analyse import analyse
from kpbench.core.files import read_json, write_json
from kpbench.paper.figures import render_all
from kpbench.paper.render import build_context, render
from workflow import REPO


@pytest.fixture(scope="session")
def finished(tree, tmp_path_factory):
    """A copy of the tiny pipeline's results, taken before any test can alter the tree."""
    folder = tmp_path_factory.mktemp("finished") / "results"
    shutil.copytree(tree / "results", folder)
    return folder


def _runs(results):
    return sorted(results.glob("runs/*/r*/run.json"))


def _edit(path, change):
    run = read_json(path)
    change(run)
    write_json(path, run)


def _quiet(run):
    """The run had the machine to itself (the tiny runs may have shared it with other work)."""
    run["contention"] = {**(run.get("contention") or {}), "foreign_cpu_share": 0.0, "contended": False}


def _failed(path):
    """A run that ended without a result: every measurement null, no epochs, no predictions."""
    def change(run):
        run["status"], run["error"] = "failed", "worker 1 of 2 failed (exit status 3)"
        run["timings"] = {key: None for key in run["timings"]}
        run["metrics"] = {key: None for key in run["metrics"]}
        run["performance"] = {**{key: None for key in run["performance"]}, "precision": "float32"}
        run["cost"]["usd"] = None
    _edit(path, change)
    (path.parent / "history.csv").write_text(path.parent.joinpath("history.csv").read_text().splitlines()[0] + "\n")
    with np.load(path.parent / "predictions.npz") as p:
        empty = {name: p[name][:0] for name in p.files}
    np.savez_compressed(path.parent / "predictions.npz", **empty)


def _nan_metrics(path):
    def change(run):
        run["metrics"]["val_rmse_px"] = run["metrics"]["val_mae_px"] = float("nan")
        run["timings"]["images_per_s"] = float("nan")
        run["performance"]["mfu"] = None
    _edit(path, change)
    history = pd.read_csv(path.parent / "history.csv")
    history["val_rmse_px"] = float("nan")
    history.to_csv(path.parent / "history.csv", index=False)


def _zero_wait(path):
    def change(run):
        run["cluster"]["wait_estimate"].update(compute_step_s=0.0, median_s=0.0, p10_s=0.0, p90_s=0.0,
                                               resolved=False)
        run["timings"]["profiling_s"] = 0.0
    _edit(path, change)


def _flat_sweep(path):
    """Times that do not grow with the message size (no bandwidth to read), one of them zero."""
    def change(run):
        for row in run["cluster"]["allreduce"]["sizes"]:
            row.update(median_s=1e-3, p10_s=1e-3, p90_s=1e-3)
        run["cluster"]["allreduce"]["sizes"][0].update(median_s=0.0, algbw_bytes_s=None, busbw_bytes_s=None)
    _edit(path, change)


def _no_sweep(path):
    """A cluster run from before the sweep existed, or one whose sweep was not recorded."""
    def change(run):
        run["cluster"].pop("allreduce")
        run["cluster"].pop("wait_estimate")
    _edit(path, change)


CASES = {
    "a zero compute estimate and profiling time": ({"local-2w": _zero_wait}, None),
    "NaN metrics and throughput": ({"local": _nan_metrics}, None),
    "a sweep with a zero and no bandwidth": ({"local-2w": _flat_sweep}, None),
    "cluster runs without a sweep": ({"local-2w": _no_sweep}, None),
    "no cluster run": ({"local-2w": None}, None),
    "no run reaches the target": ({}, 0.001),
    "one repeat": ({"r2": None}, None),
    "an instance whose every repeat failed": ({"local": _failed}, None),
}


def _build(results, tmp_path, target):
    """aggregate → analyse → figures → LaTeX → PDF over `results`, as the rules run them."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    runs = _runs(results)
    reference = {k: config["original_study"][k] for k in ("epochs", "train_images", "validation_images", "batch_size",
                                                       "price_date")}
    reference["training_flops_per_image"] = read_json(results / "model.json")["training_flops_per_image"]
    summarise(runs, REPO / config["original_study"]["csv"], reference, results / "summary.csv", target)
    build = tmp_path / "build"
    shutil.copytree(REPO / "paper" / "templates", tmp_path / "templates", dirs_exist_ok=True)
    analysis = results / "analysis.json"
    write_json(analysis, analyse(results / "summary.csv", runs, results / "model.json",
                                 {"analysis": config["analysis"]}))
    folders = [path.parent for path in runs]
    render_all(analysis, results / "dataset" / "samples.npz", [f / "history.csv" for f in folders],
               [f / "predictions.npz" for f in folders], build / "figures")
    settings = {"paper": config["paper"], "data": config["data"], "preprocess": config["preprocess"],
                "workload": {"name": "tiny", **config["workloads"]["tiny"]}, "training": config["training"],
                "original_study": config["original_study"], "limits": config["limits"],
                "analysis": {**config["analysis"], "target_rmse_px": target or config["analysis"]["target_rmse_px"]}}
    context = build_context(analysis, results / "dataset" / "stats.json", results / "model.json", settings)
    render(tmp_path / "templates", build, context)
    subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-cd", str(build / "paper.tex")],
                   check=True, capture_output=True)
    return subprocess.run(["pdftotext", str(build / "paper.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("case", CASES)
def test_every_honest_value_still_ends_in_a_pdf(case, finished, tmp_path):
    edits, target = CASES[case]
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    for selector, edit in edits.items():
        for path in _runs(results):
            if selector in (path.parent.parent.name, path.parent.name):
                if edit is None:
                    shutil.rmtree(path.parent)
                else:
                    edit(path)
    text = _build(results, tmp_path, target)
    summary = pd.read_csv(results / "summary.csv")
    if case == "an instance whose every repeat failed":
        assert list(summary[summary["instance"] == "local"]["status"]) == ["failed", "failed"]
        assert "no run finished with predictions" not in text  # local-2w still has predictions
    if case == "no run reaches the target":
        assert summary[summary["source"] == "kpbench"]["time_to_target_s"].isna().all()
    if case == "a zero compute estimate and profiling time":
        assert "unresolved (0.000)" in text
    if case in ("cluster runs without a sweep", "no cluster run"):
        assert "All-reduce fit per cluster run" not in text and "assume latency-free links" in text
    if case == "a sweep with a zero and no bandwidth":
        assert "unresolved" in text
    if case == "NaN metrics and throughput":
        row = summary[(summary["instance"] == "local") & (summary["repeat"] == 1)].iloc[0]
        assert math.isnan(row["val_rmse_px"])
    assert "Provenance" in text


def test_a_malformed_run_record_names_its_file_and_field_and_writes_nothing(finished, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    (results / "summary.csv").unlink()
    path = _runs(results)[0]
    _edit(path, lambda run: run["timings"].update(train_s="fast"))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    with pytest.raises(KpbenchError, match=rf"{path}: field timings\.train_s: 'fast' is not of type"):
        summarise(_runs(results), REPO / config["original_study"]["csv"], {"epochs": 100, "train_images": 6344,
                  "batch_size": 64}, results / "summary.csv")
    assert not (results / "summary.csv").exists()
    _edit(path, lambda run: run["timings"].update(train_s=1.0) or run["instance"].pop("backend"))
    with pytest.raises(KpbenchError, match=rf"{path}: field instance: 'backend' is a required property"):
        analyse(finished / "summary.csv", [path], finished / "model.json", {"analysis": {"scaling_reference": "g4dn.xlarge"}})


def test_the_paper_prints_the_chosen_runs_labels_projections_and_shows_stalls(finished, tmp_path):
    """Three repeats whose fastest run has the best accuracy: dropping the fastest and slowest by
    training time leaves repeat 2, whose accuracy every column must then carry. Repeat 2 also stalled
    outside its epochs: the stall shows in its column and does not move its projection."""
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    local = results / "runs" / "local"
    shutil.copytree(local / "r2", local / "r3")
    for repeat, epochs_s, stall, rmse in ((1, 10.0, 0.0, 1.111), (2, 20.0, 5.0, 3.333), (3, 30.0, 0.0, 2.222)):
        def change(run, repeat=repeat, epochs_s=epochs_s, stall=stall, rmse=rmse):
            _quiet(run)
            run["repeat"], run["metrics"]["val_rmse_px"] = repeat, rmse
            count = len(run["timings"]["epoch_s"])
            run["timings"]["epoch_s"] = [epochs_s / count] * count
            run["timings"]["train_s"] = epochs_s + stall
        _edit(local / f"r{repeat}" / "run.json", change)
    _build(results, tmp_path, None)
    summary = pd.read_csv(results / "summary.csv").set_index(["instance", "repeat"])
    assert summary.loc[("local", 2), "stall_s"] == pytest.approx(5.0)
    assert summary.loc[("local", 3), "stall_s"] == pytest.approx(0.0, abs=1e-9)
    # Repeat 3 is repeat 2's copy but for its epoch times and stall: the same projection.
    assert summary.loc[("local", 2), "projected_train_s"] == pytest.approx(summary.loc[("local", 3), "projected_train_s"])
    tex = {name: (tmp_path / "build" / "sections" / f"{name}.tex").read_text() for name in ("results", "cost")}
    row = next(line for line in tex["results"].splitlines() if line.startswith("local & "))
    cells = row.rstrip(" \\").split(" & ")
    assert cells[8] == r"\num{3.33}" and cells[-1] == r"\num{1.11}--\num{3.33}"  # the kept run's; all runs' range
    assert r"\num{2.22}" not in row and r"\num{1.11}" not in " & ".join(cells[:-1])
    assert row.startswith("local & 1 of 3 & ") and r"\num{25.0}" in row and r"\num{5.0}" in row
    ours = [line for line in tex["cost"].splitlines() if line.startswith("kpbench & ")]
    assert ours and all("& projected, " in line for line in ours)
    theirs = [line for line in tex["cost"].splitlines() if line.startswith("original study & ")]
    assert theirs and not any("projected" in line for line in theirs)


def test_contended_and_resumed_runs_are_marked_and_contended_ones_left_out_of_the_means(finished, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    local = results / "runs" / "local"

    def contend(run):
        run["contention"] = {**(run.get("contention") or {}), "foreign_cpu_share": 0.42, "contended": True}
        run["metrics"]["val_rmse_px"] = 99.0

    def resume(run):
        run["resumed"], run["timings"]["resumed_from_epoch"] = True, 1

    for path in _runs(results):
        _edit(path, _quiet)
    _edit(local / "r1" / "run.json", contend)
    _edit(results / "runs" / "local-2w" / "r2" / "run.json", resume)
    text = _build(results, tmp_path, None)
    tex = (tmp_path / "build" / "sections" / "results.tex").read_text()
    assert "local \\#1: contended: 42 \\% of the CPU used by other processes." in tex
    assert "local-2w \\#2: resumed after epoch 1: its timings were made by more than one process." in tex
    assert "local \\#1$^{\\dagger}$" in tex and "local-2w \\#2$^{\\ddagger}$" in tex
    # The contended run's 99 px is not in local's mean: only repeat 2 is averaged (the last column, the
    # range over all runs, still shows it).
    row = next(line for line in tex.splitlines() if line.startswith("local & "))
    cells = row.rstrip(" \\").split(" & ")
    assert row.startswith("local & 1 of 2 & ") and "99.00" not in cells[8] and cells[-1].endswith(r"\num{99.00}")
    assert "Marked runs" in text

    # Every repeat contended: they are averaged anyway, and the paper says so.
    _edit(local / "r2" / "run.json", contend)
    _build(results, tmp_path, None)
    tex = (tmp_path / "build" / "sections" / "results.tex").read_text()
    assert "Every run of local was contended" in tex
    row = next(line for line in tex.splitlines() if line.startswith("local & "))
    assert row.startswith("local & 2 & ") and row.rstrip(" \\").split(" & ")[8] == r"\num{99.00}"  # in the mean now


def test_runs_made_by_different_code_are_flagged(finished, tmp_path):
    """One run made by another commit (a dirty tree): the paper says two versions made the runs and
    marks the odd one; runs that recorded no version read as such, never as an error."""
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    runs = _runs(results)
    for path in runs:
        _edit(path, lambda run: (_quiet(run), run.update(code={"commit": "a" * 40, "dirty": False, "package": "0.1.0"})))
    _edit(runs[-1], lambda run: run.update(code={"commit": "b" * 40, "dirty": True, "package": "0.1.0"}))
    text = " ".join(_build(results, tmp_path, None).split())
    odd = read_json(runs[-1])
    assert f"These runs were made by 2 code versions ({'a' * 12}: {len(runs) - 1} runs; {'b' * 12}-dirty: 1 run)" in text
    assert f"{odd['instance']['name']} #{odd['repeat']}: code {'b' * 12}-dirty, where most runs used {'a' * 12}" in text
    analysis = read_json(results / "analysis.json")
    assert analysis["code_versions"]["mixed"] and [bool(run["marks"]) for run in analysis["runs"]][-1]


def test_one_code_version_is_stated_not_flagged(finished, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    for path in _runs(results):
        _edit(path, lambda run: (_quiet(run), run.update(code={"commit": "c" * 40, "dirty": False, "package": "0.1.0"})))
    text = " ".join(_build(results, tmp_path, None).split())
    assert "code versions" not in text and "c" * 12 in text  # the provenance's shared values


def test_a_spot_runs_restarts_are_marked_with_the_work_they_lost():
    """A run relaunched after spot interruptions (kpbench.backends.aws.ec2) is marked resumed, with its
    interruptions and the work they cost, also when none came after a checkpoint (epoch 0)."""
    from kpbench.analysis.analyse import run_marks

    interrupted = {"timings": {"resumed_from_epoch": 0}, "resumed": False,
                   "remote": {"interruptions": [{"work_lost_s": 12.4}, {"work_lost_s": 30.0}]}}
    assert run_marks(interrupted) == ["resumed after epoch 0 (2 spot interruptions, 42 s of work lost, every "
                                      "instance held billed): its timings were made by more than one process"]
    assert run_marks({"timings": {}, "remote": {"interruptions": []}}) == []
