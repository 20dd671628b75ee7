# Shared settings and helpers: instances are rows of configuration, never copies of code.
import re
from pathlib import Path

from kpbench.core import layout
from kpbench.core.catalogue import CAMPAIGN_SPOT_ADVISOR, priced_at, spot_prices_at
from kpbench.core.files import write_if_changed
from kpbench.model.registry import REFERENCE_MODEL
from kpbench.core.settings import (
    as_json,
    launch_settings,
    probe_caps,
    probe_spec,
    rented_instances,
    run_spec,
    trained_instances,
    validated,
    workload,
)

# One path for every command and this workflow: schema defaults filled in, cross-field checks made.
validated(config)
INSTANCES = {row["name"]: row for row in trained_instances(config)}
RENTED = rented_instances(config)


wildcard_constraints:
    instance="|".join(INSTANCES),
    repeat=r"\d+",


# Reviewer mode: with `campaign` set (a stored campaign's config.yaml sets it), every figure and the
# paper are built from that campaign's stored results; no data is fetched and nothing is trained.
CAMPAIGN = config["campaign"]
RESULTS = f"{CAMPAIGN}/results" if CAMPAIGN else "results"
# What is derived from results (analysis, predictions); a campaign's stored results stay untouched.
DERIVED = "paper/build" if CAMPAIGN else "results"
ANALYSIS = f"{DERIVED}/analysis.json"
# The rental forecast (rule predict), apart from the keypoints a run predicts (its predictions.npz).
FORECAST = f"{DERIVED}/forecast"
# How runs are launched (limits, AWS plumbing): read by every train job, never a reason to rerun one.
LAUNCH = "results/launch.json"
# A probe's launch: the runs' settings with the probe's time cap (kpbench.core.settings.probe_caps).
PROBE_LAUNCH = "results/probes/launch.json"
# Probes (rules/probe.smk): each instance's capped short run; a stored campaign has those it made.
PROBE_DIR = f"{RESULTS}/{layout.PROBE_DIR}"
PROBE_RUNS = [
    path
    for path in expand(f"{PROBE_DIR}/{layout.RUN_JSON}", instance=INSTANCES)
    if not CAMPAIGN or Path(path).exists()
]
# The probes extrapolated with the quality target and checked against the full runs (the paper's).
PROBE_VALIDATION = [f"{DERIVED}/probe_validation.json"] if PROBE_RUNS else []
# Every instance runs `repeats` times, each repeat with its own seed (training.seed + repeat - 1).
REPEATS = range(1, config["repeats"] + 1)
RUN_DIR = layout.run_dir(RESULTS, "{instance}", "{repeat}")
RUN_FILES = {
    name: expand(f"{RUN_DIR}/{name}", instance=INSTANCES, repeat=REPEATS)
    for name in layout.RUN_FILES
}
RUN_JSONS = RUN_FILES[layout.RUN_JSON]
FIGURE_FILES = expand("paper/build/figures/{name}.pdf", name=layout.FIGURES)
# The description of the model the original study trained (its rows' FLOPs), ours where it is the same.
ORIGINAL_MODEL = f"{RESULTS}/{'' if workload(config)['model'] == REFERENCE_MODEL else 'original_'}model.json"
# The catalogue that prices every machine: a stored campaign's own where it keeps one.
CATALOGUE = str(priced_at(CAMPAIGN, "config/catalogue.csv"))
# Spot prices per zone (a stored campaign's own; else the plan's snapshot where EC2 rows are planned;
# else the dated default) and the interruption bands (kpbench.forecast.spot).
SPOT_SNAPSHOT = f"results/{layout.SPOT_SNAPSHOT}"
SPOT_PRICES = str(
    spot_prices_at(
        CAMPAIGN, SPOT_SNAPSHOT if RENTED else None, "config/spot_prices.csv"
    )
)
SPOT_ADVISOR = str(
    priced_at(CAMPAIGN, "config/spot_advisor.csv", CAMPAIGN_SPOT_ADVISOR)
)
# Runs measured outside the pipeline (bench/measured/), each with its model's description.
MEASURED_ELSEWHERE = sorted(str(p) for p in Path().glob(layout.MEASURED_RUNS))
# Batch sweeps measured outside the pipeline (bench/batch_sweep.py): a stack's per-step floor on a GPU.
SWEEPS = sorted(str(p) for p in Path().glob(layout.MEASURED_SWEEPS))
# What setting a rented machine up takes, as measured (bench/setup.py), and the aws settings that
# price a machine besides its instance (kpbench.forecast.rental).
SETUP_MEASURED = layout.SETUP_MEASURED
RENTAL_PRICES = ("prices", "volume_gb")
MEASURED_MODELS = [
    str(Path(p).with_name(layout.MEASURED_MODEL_FILE)) for p in MEASURED_ELSEWHERE
]
# What `kpbench plan` reads (rules plan and probe_plan): what was measured before this campaign.
PLAN_INPUTS = dict(
    model="results/model.json",
    original_model=ORIGINAL_MODEL,
    catalogue=CATALOGUE,
    spot_prices="config/spot_prices.csv",
    spot_advisor=SPOT_ADVISOR,
    original=config["original_study"]["csv"],
    original_logs="config/original_study_runs.json",
    measured=MEASURED_ELSEWHERE,
    measured_models=MEASURED_MODELS,
    setup=SETUP_MEASURED,
    sweeps=SWEEPS,
)
# Only synthetic faces come with their true keypoints (data/raw/truth.npz).
SYNTHETIC = config["data"]["source"] == "synthetic"
# What forward fill costs (rules/forward_fill.smk); a campaign stored before it was measured has none.
FORWARD_FILL = [
    path
    for path in [f"{RESULTS}/forward_fill.json"]
    if not CAMPAIGN or Path(path).exists()
]

# What mixed_bfloat16 saves on this CPU (rules/precision.smk), measured on the first local single-worker
# instance's first run; none without such an instance, or in a campaign stored before it was measured.
PRECISION_RUN = next(
    (
        name
        for name, row in INSTANCES.items()
        if row["backend"] == "local" and row["workers"] == 1
    ),
    None,
)
PRECISION = [
    path
    for path in [f"{RESULTS}/precision.json"]
    if PRECISION_RUN and (not CAMPAIGN or Path(path).exists())
]


# A failed command's one-line reason (its log's last line) also reaches the terminal, where Snakemake's
# own report only points at the log; the full output stays in the log.
REASON_TO_TERMINAL = " > {log} 2>&1 || (tail -n 1 {log} >&2; exit 1)"


def local_copy(wildcards):
    """The zip or folder that data.source: path reads, so that Snakemake sees it change (an unset
    data.path is left to `kpbench fetch`, which says so)."""
    data = config["data"]
    return [data["path"]] if data["source"] == "path" and data["path"] else []


def measurement(wildcards):
    """Everything that defines one instance's run; a change to it reruns that run only."""
    return as_json(run_spec(config, wildcards.instance, wildcards.repeat))


def train_threads(wildcards):
    """A local run holds every core Snakemake was given, so nothing else it schedules (another run
    above all) shares the machine while it is timed; an EC2 run's launcher only waits.
    """
    return 1 if wildcards.instance in RENTED else workflow.cores


def launch_input(wildcards):
    """What a run reads about its launch (launch.json: rules/train.smk writes it). EC2 runs also wait
    for the plan, which refuses a matrix over budget before anything launches, and for the account's
    set-up (rule aws_setup). A finished run takes them `ancient`, so a newer one never reruns it; a run
    still to make takes the gates plainly: Snakemake (9.27, dag.py update_needrun) does not look at a
    job below a rerunning one when all it takes from it is ancient, and left out the runs a replanned
    matrix adds."""
    if wildcards.instance not in RENTED:
        return [ancient(LAUNCH)]
    gates = ["results/plan.json", "results/aws-setup.json"]
    folder = Path(layout.run_dir(RESULTS, wildcards.instance, wildcards.repeat))
    if all((folder / name).is_file() for name in layout.RUN_FILES):
        gates = [ancient(path) for path in gates]
    return [ancient(LAUNCH), *gates]


def probe_measurement(wildcards):
    """What defines one instance's probe: its run's spec and the probe's epochs and steps."""
    return as_json(probe_spec(config, wildcards.instance))


def probe_gates(wildcards):
    """A rented probe waits for the probe plan (refused over the probe's USD caps) and the account's
    set-up; a probe on this machine for neither."""
    if wildcards.instance not in RENTED:
        return []
    return ["results/probes/plan.json", "results/aws-setup.json"]


def unknown_instance(wildcards):
    """A run target naming no configured instance, refused while planning with the names there are
    (without this rule Snakemake says only MissingRuleException)."""
    raise ValueError(
        f"no instance named '{wildcards.unknown}' trains here; those that do: {', '.join(INSTANCES)}"
    )


def original_reference():
    keys = ("epochs", "train_images", "validation_images", "batch_size", "price_date")
    return as_json({k: config["original_study"].get(k) for k in keys})
