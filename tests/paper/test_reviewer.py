"""Reviewer mode: the shipped campaign rebuilds the paper with no data and no training."""

import re
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from kpbench import KpbenchError
from kpbench.core.campaign import store_campaign
from workflow import REPO, planned_jobs, snakemake

# Runs Snakemake, whole pipelines or real clusters: left out of the fast loop (`-m "not workflow"`).
pytestmark = pytest.mark.workflow

CAMPAIGNS = sorted((REPO / "campaigns").glob("*/config.yaml"))


def test_a_campaign_ships_with_the_repository():
    assert CAMPAIGNS, "campaigns/*/config.yaml"


def _review_tree(root):
    """A checkout's workflow, paper templates, stored campaigns and rows measured elsewhere in `root`."""
    for name in ("Snakefile", "rules", "config", "environment.yml", "campaigns"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    shutil.copytree(REPO / "paper", root / "paper", ignore=shutil.ignore_patterns("build"))
    shutil.copytree(REPO / "bench" / "measured", root / "bench" / "measured")  # as a checkout has them
    return root


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """A clean tree with the workflow, the stored campaigns and the rows measured elsewhere, but no
    data/ and no results/."""
    root = _review_tree(tmp_path_factory.mktemp("review"))
    config = CAMPAIGNS[0].relative_to(REPO)
    result = snakemake(root, "--cores", "1", "paper", "--configfile", str(config))
    return root, config.parent, result


def test_reviewer_mode_builds_the_paper_without_data_or_training(reviewed):
    root, campaign, result = reviewed
    assert planned_jobs(result.stdout + result.stderr) == {
        "analyse": 1, "predict": 1, "render_figures": 1, "render_tex": 1, "compile_pdf": 1, "paper": 1}
    assert (root / "paper" / "build" / "paper.pdf").is_file()
    assert not (root / "data").exists() and not (root / "results").exists()
    text = subprocess.run(["pdftotext", str(root / "paper" / "build" / "paper.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "Which machine to rent today" in text and "Leave-one-out" in text


def test_a_negative_number_reads_as_one_in_the_text_layer(reviewed):
    """Copy, search and screen readers get a minus (U+2212), not the "=" of a glyph without Unicode."""
    root, _, _ = reviewed
    text = subprocess.run(["pdftotext", str(root / "paper" / "build" / "paper.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert re.search(r"\u2212\d", text)
    assert not re.search(r"[\x00-\x08\x0b\x0e-\x1f\x80-\x9f]", text)  # no glyph extracts as a control character
    assert not re.search(r"[(\s]=\d[\d.,]*\s?%", text), re.findall(r".{30}[(\s]=\d[\d.,]*\s?%", text)


def test_the_abstract_answers_the_papers_question_on_what_was_run(reviewed):
    """The abstract names the data the runs trained, the workload's size and the repeats; its machine
    to rent is the cheapest to the quality target among today's catalogue rows, said to be predicted;
    a published 2019 row is never called a projection."""
    root, campaign, _ = reviewed
    from kpbench.core.files import read_json

    text = " ".join(subprocess.run(["pdftotext", "-l", "1", str(root / "paper" / "build" / "paper.pdf"), "-"],
                                   capture_output=True, text=True, check=True).stdout.split())
    abstract = text[text.index("Abstract"):text.index("Introduction")]
    config = yaml.safe_load((root / campaign / "config.yaml").read_text())
    summary = pd.read_csv(root / campaign / "results" / "summary.csv")
    ours = summary[summary["source"] == "kpbench"]
    assert ("synthetic faces" in abstract) == (config["data"]["source"] == "synthetic")
    assert f"{int(ours['train_images'].iloc[0]):,} training images" in abstract
    study = config.get("original_study") or yaml.safe_load((root / "config" / "config.yaml").read_text())["original_study"]
    share = ours["train_images"].iloc[0] * ours["epochs"].iloc[0] / (study["train_images"] * study["epochs"])
    assert re.search(rf"\({100 * share:.1f}\s?% of the original study.s {study['train_images']:,} images", abstract)
    assert f"each run {config['repeats']} times" in abstract or (config["repeats"] == 1 and "each run once" in abstract)
    current = [r for r in read_json(root / "paper" / "build" / "forecast.json")["catalogue"]
               if r["status"] == "current" and r["cost_to_target_usd"]]
    cheapest = min(current, key=lambda r: r["cost_to_target_usd"])
    assert "Predicted, not measured" in abstract and f"cheapest rental is {cheapest['instance_type']}" in abstract
    # A machine left out of the ranking to the target is named there, with why.
    forecast = read_json(root / "paper" / "build" / "forecast.json")
    untargeted = [r for r in forecast["catalogue"] if r["status"] == "current" and not r["cost_to_target_usd"]]
    assert untargeted and all(r["instance_type"] in abstract for r in untargeted)
    ran = {int(count) for count in forecast["epochs_to_target_by_replicas"]}  # the worker counts we ran
    never_ran = all(r["devices"] not in ran for r in untargeted)
    assert ("we made no run with as many replicas" in abstract) == never_ran
    assert ("no run of ours with as many replicas reached it" in abstract) == (not never_ran)
    assert "Projected to the original" not in abstract and "as published, never as projections" in abstract


def test_the_rental_table_says_whether_each_machine_s_volume_and_address_are_priced(reviewed):
    """The caption names the volume and address only where the campaign's configuration prices them."""
    root, campaign, _ = reviewed
    from kpbench.core.billing import machine_extras_usd_per_hour
    from kpbench.core.files import read_json
    from kpbench.core.settings import load_config

    config = load_config([root / "config" / "config.yaml", root / campaign / "config.yaml"])
    extras = read_json(root / "paper" / "build" / "forecast.json")["extras_usd_per_hour"]
    assert extras == pytest.approx(machine_extras_usd_per_hour(config["aws"]))
    text = " ".join(subprocess.run(["pdftotext", str(root / "paper" / "build" / "paper.pdf"), "-"],
                                   capture_output=True, text=True, check=True).stdout.split())
    said = "root volume and public address ($" if extras else "prices no root volume or public address"
    assert said in text


def test_the_provenance_names_every_measured_row_the_prediction_used(reviewed):
    """Rows under bench/measured calibrate the prediction: the provenance names each with its device,
    software, start and code (a GPU among them, though the campaign's own runs had none)."""
    root, _, _ = reviewed
    from kpbench.core.files import read_json

    text = " ".join(subprocess.run(["pdftotext", str(root / "paper" / "build" / "paper.pdf"), "-"],
                                   capture_output=True, text=True, check=True).stdout.split())
    rows = read_json(root / "paper" / "build" / "forecast.json")["measured_extra_rows"]
    assert rows
    packed = "".join(text.split())  # a path in \texttt breaks across lines at its hyphens
    for row in rows:
        assert "".join(f"{row['path']}: {row['device']}, {row['framework']}".split()) in packed
    assert any("NVIDIA" in row["device"] for row in rows)


def _edit_csv(path, edit):
    import csv

    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = edit(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_campaign_is_priced_at_its_own_catalogue(tmp_path):
    """A reviewer's rebuild prices from the catalogue and spot prices the campaign keeps, never today's:
    prices changed today leave it alone, a price that has changed since stays the campaign's, and a type
    that has left today's catalogue is still known."""
    from kpbench.core.files import read_json

    campaign = next(path.parent for path in CAMPAIGNS if (path.parent / "catalogue.csv").is_file())
    root = _review_tree(tmp_path)
    stored = root / campaign.relative_to(REPO)

    def then(rows):  # the campaign's own: g4dn.xlarge at 9.99, and a type gone from today's
        kept = next(row for row in rows if row["instance_type"] == "g4dn.xlarge")
        kept["usd_per_hour"] = "9.99"
        return rows + [{**kept, "instance_type": "g4dn.gone", "usd_per_hour": "0.5"}]

    def today(rows):  # today's files, changed since: never the rebuild's
        for row in rows:
            row["usd_per_hour"] = "123.0"
        return rows

    _edit_csv(stored / "catalogue.csv", then)
    _edit_csv(stored / "spot_prices.csv", lambda rows: [
        {**row, "usd_per_hour": "0.0777"} if row["instance_type"] == "g4dn.xlarge" else row for row in rows])
    _edit_csv(root / "config" / "catalogue.csv", today)
    _edit_csv(root / "config" / "spot_prices.csv", today)
    snakemake(tmp_path, "--cores", "1", "paper/build/forecast.json", "--configfile",
              str((stored / "config.yaml").relative_to(tmp_path)))
    priced = {row["instance_type"]: row for row in read_json(tmp_path / "paper" / "build" / "forecast.json")["catalogue"]}
    assert priced["g4dn.xlarge"]["usd_per_hour"] == 9.99 and priced["g4dn.gone"]["usd_per_hour"] == 0.5
    assert priced["g4dn.xlarge"]["spot_usd_per_hour"] == 0.0777
    assert all(row["usd_per_hour"] != 123.0 and row["spot_usd_per_hour"] != 123.0 for row in priced.values())


def test_a_stored_campaign_keeps_the_catalogue_it_was_priced_at(tmp_path):
    source = REPO / CAMPAIGNS[0].parent / "results"
    out = store_campaign(source, [CAMPAIGNS[0]], tmp_path / "campaigns" / "priced")
    assert (out / "catalogue.csv").read_bytes() == (REPO / "config" / "catalogue.csv").read_bytes()
    for name in ("spot_prices.csv", "spot_advisor.csv"):  # no plan snapshot here: the dated defaults
        assert (out / name).read_bytes() == (REPO / CAMPAIGNS[0].parent / name).read_bytes()


def test_a_latex_error_reaches_the_terminal(tmp_path):
    """A paper that does not compile says why on the terminal, LaTeX's own error line, not only in the log."""
    root = _review_tree(tmp_path)
    template = root / "paper" / "templates" / "paper.tex.j2"
    template.write_text(template.read_text().replace("\\maketitle\n", "\\maketitle\\nosuchcommand\n", 1))
    result = snakemake(root, "--cores", "1", "paper", "--configfile", str(CAMPAIGNS[-1].relative_to(REPO)),
                       check=False)
    assert result.returncode != 0
    assert "! Undefined control sequence." in result.stderr and "nosuchcommand" in result.stderr


def test_the_pdf_carries_the_stored_numbers(reviewed):
    root, campaign, _ = reviewed
    from kpbench.analysis.aggregate import by_instance
    from kpbench.analysis.scaling import scaling_analysis
    from kpbench.core.files import read_json

    results = root / campaign / "results"
    summary = by_instance(pd.read_csv(results / "summary.csv"))  # repeats as the tables show them
    text = subprocess.run(["pdftotext", str(root / "paper" / "build" / "paper.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    ours = summary[summary["source"] == "kpbench"]
    assert len(ours) >= 1
    for row in ours.itertuples():
        assert row.instance in text
        assert f"{row.val_rmse_px:.2f}" in text and f"{row.train_s:,.1f}" in text
        assert f"{row.images_per_s:,.1f}" in text
        if row.repeats > 1:
            assert f"{row.train_s_min:,.1f}–{row.train_s_max:,.1f}" in text
    for row in summary[summary["status"] == "measured"].itertuples():
        assert f"{row.usd_per_hour:.3f}" in text  # the instance table's prices, ours and theirs
    assert "7,266,494" in text
    runs = [read_json(path) for path in sorted(results.glob("runs/*/r*/run.json"))]
    scaling = scaling_analysis(summary, runs, read_json(results / "model.json")["trainable_parameters"], "g4dn.xlarge")
    for prediction in scaling["predictions"]:  # the predicted-speedup table
        assert all(f"{speedup:.2f}" in text for speedup in prediction["speedups"].values())
    for measured in scaling["measured"]:
        assert f"{measured['speedup']:.2f}" in text
    # A count is said as the runs it rests on: one run is never "our runs".
    flat = " ".join(text.split())
    resolved = sum(1 for fit in scaling["fits"] if fit["loopback"] and fit["latency_resolved"])
    if resolved:
        assert (f"median fitted over our {resolved} loopback cluster runs" if resolved > 1
                else "the one fitted on our single loopback cluster run") in flat
    else:
        assert "The latency per message is" not in flat


def test_storing_a_campaign_copies_results_and_config(tmp_path):
    source = REPO / CAMPAIGNS[0].parent / "results"
    config = CAMPAIGNS[0]
    out = tmp_path / "campaigns" / "copy"
    store_campaign(source, [config], out)
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["campaign"] == out.as_posix()
    assert (out / "results" / "summary.csv").read_bytes() == (source / "summary.csv").read_bytes()
    with pytest.raises(KpbenchError, match="never overwritten"):
        store_campaign(source, [config], out)


def test_a_stored_campaign_keeps_each_whole_probe(tmp_path):
    results = _results_copy(tmp_path)
    whole, partial = results / "probes" / "local", results / "probes" / "local-2w"
    for folder, names in ((whole, ("run.json", "history.csv", "predictions.npz")), (partial, ("run.json",))):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text(name)
    out = store_campaign(results, [CAMPAIGNS[0]], tmp_path / "campaigns" / "probed")
    assert sorted(p.name for p in (out / "results" / "probes" / "local").iterdir()) == [
        "history.csv", "predictions.npz", "run.json"]
    assert not (out / "results" / "probes" / "local-2w").exists()  # a probe without its files is none


def test_an_unfinished_campaign_is_refused_and_nothing_is_written(tmp_path):
    results = tmp_path / "results"
    (results / "runs" / "local").mkdir(parents=True)
    (results / "summary.csv").write_text("x\n")
    with pytest.raises(KpbenchError, match="not a finished campaign, missing model.json"):
        store_campaign(results, [REPO / "config" / "config.yaml"], tmp_path / "campaigns" / "c")
    assert not (tmp_path / "campaigns").exists() or not any((tmp_path / "campaigns").iterdir())


def test_snakemake_report_holds_the_figures_and_the_paper(reviewed):
    root, campaign, _ = reviewed
    snakemake(root, "--report", "report.html", "--configfile", str(campaign / "config.yaml"))
    html = (root / "report.html").read_text(errors="replace")
    for name in ("sample_faces.pdf", "predictions.pdf", "learning_curves.pdf", "time_cost.pdf", "pareto.pdf",
                 "allreduce.pdf", "paper.pdf"):
        assert name in html


def _results_copy(tmp_path):
    """A private copy of the first shipped campaign's results (the default workload, one repeat)."""
    results = tmp_path / "results"
    shutil.copytree(REPO / CAMPAIGNS[0].parent / "results", results)
    return results


def test_a_stored_campaign_says_the_workload_its_runs_trained(tmp_path):
    """Runs of the default workload stored under a configuration that names another: the stored
    configuration is the runs' (its paper would otherwise print another batch size and epochs)."""
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text("workload: tiny\n")
    base = yaml.safe_load(CAMPAIGNS[0].read_text())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**base, "campaign": None}))
    out = store_campaign(_results_copy(tmp_path), [config, overlay], tmp_path / "campaigns" / "derived")
    assert yaml.safe_load((out / "config.yaml").read_text())["workload"] == "default"


def _repeated_campaign(tmp_path):
    """A copy of a shipped campaign of three repeats, and its configuration asking for one."""
    campaign = next(path.parent for path in CAMPAIGNS if yaml.safe_load(path.read_text())["repeats"] == 3)
    results = tmp_path / "results"
    shutil.copytree(campaign / "results", results)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load((campaign / "config.yaml").read_text()),
                                      "campaign": None, "repeats": 1}))
    return results, config


def test_a_stored_campaign_holds_every_repeat_its_runs_made(tmp_path):
    """Three repeats stored under a configuration of one: the campaign holds and says all three,
    as its summary lists them."""
    results, config = _repeated_campaign(tmp_path)
    out = store_campaign(results, [config], tmp_path / "campaigns" / "c")
    assert yaml.safe_load((out / "config.yaml").read_text())["repeats"] == 3
    assert sorted(p.parent.name for p in (out / "results" / "runs" / "local").glob("r*/run.json")) == ["r1", "r2", "r3"]


def test_a_summary_listing_runs_the_campaign_lacks_is_refused(tmp_path):
    results, config = _repeated_campaign(tmp_path)
    shutil.rmtree(results / "runs" / "local-2w" / "r3")
    with pytest.raises(KpbenchError, match=r"summary.csv: lists runs local r3, local-2w r3 that the campaign would "
                                           r"not hold and lacks none"):
        store_campaign(results, [config], tmp_path / "campaigns" / "c")
    assert not (tmp_path / "campaigns").exists()


def test_a_campaign_whose_runs_another_configuration_made_is_refused(tmp_path):
    base = yaml.safe_load(CAMPAIGNS[0].read_text())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**base, "campaign": None,
                                      "training": {**base["training"], "learning_rate": 0.01}}))
    with pytest.raises(KpbenchError, match=r"r1/run.json: made with training.learning_rate = 0.001, the "
                                           r"configuration says 0.01 .*--configfile the runs were made with"):
        store_campaign(_results_copy(tmp_path), [config], tmp_path / "campaigns" / "c")
    assert not (tmp_path / "campaigns").exists()
