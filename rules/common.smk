# Shared settings and helpers: instances are rows of configuration, never copies of code.
import json
from pathlib import Path

from kpbench import KpbenchError
from kpbench.settings import trained_instances

if config["workload"] not in config["workloads"]:
    raise KpbenchError(
        f"config: workload '{config['workload']}' is not one of {', '.join(config['workloads'])}"
    )
if len({row["name"] for row in config["instances"]}) != len(config["instances"]):
    raise KpbenchError("config: instance names must be unique")
INSTANCES = {row["name"]: row for row in trained_instances(config)}
REMOTE_BACKENDS = ("ec2", "ec2-cluster")
REMOTE = [name for name, row in INSTANCES.items() if row["backend"] in REMOTE_BACKENDS]
for name in REMOTE:
    if not INSTANCES[name].get("instance_type"):
        raise KpbenchError(f"config: instance {name} (backend {INSTANCES[name]['backend']}) needs instance_type")
if REMOTE and not config["aws"].get("bucket"):
    raise KpbenchError(
        f"config: instance(s) {', '.join(REMOTE)} run on EC2 and need aws.bucket (an S3 bucket for code, "
        "data and results); see config/aws.yaml"
    )


wildcard_constraints:
    instance="|".join(INSTANCES),
    repeat=r"\d+",


# Reviewer mode: with `campaign` set (a stored campaign's config.yaml sets it), every figure and the
# paper are built from that campaign's stored results; no data is fetched and nothing is trained.
CAMPAIGN = config.get("campaign")
RESULTS = f"{CAMPAIGN}/results" if CAMPAIGN else "results"
# What kpbench.predict makes of them (.json and .csv); a campaign's stored results stay untouched.
PREDICTIONS = "paper/build/predictions" if CAMPAIGN else "results/predictions"
# Every instance runs `repeats` times, each repeat with its own seed (training.seed + repeat - 1).
REPEATS = range(1, config["repeats"] + 1)
RUN_JSONS = expand(f"{RESULTS}/runs/{{instance}}/r{{repeat}}/run.json", instance=INSTANCES, repeat=REPEATS)
RUN_FILES = {
    name: expand(f"{RESULTS}/runs/{{instance}}/r{{repeat}}/{name}", instance=INSTANCES, repeat=REPEATS)
    for name in ("history.csv", "predictions.npz")
}
FIGURE_FILES = expand(
    "paper/build/figures/{name}.pdf",
    name=["sample_faces", "predictions", "learning_curves", "time_cost", "pareto", "scaling", "allreduce",
          "forward_fill", "predicted_measured", "roofline", "rent_pareto"],
)
# Only synthetic faces come with their true keypoints (data/raw/truth.npz).
SYNTHETIC = config["data"]["source"] == "synthetic"
# What forward fill costs (rules/forward_fill.smk); a campaign stored before it was measured has none.
FORWARD_FILL = [
    path for path in [f"{RESULTS}/forward_fill.json"] if not CAMPAIGN or Path(path).exists()
]


def run_spec(wildcards):
    """Everything that defines one instance's run; a change to it reruns that instance only."""
    workload = {"name": config["workload"], **config["workloads"][config["workload"]]}
    spec = {
        "instance": INSTANCES[wildcards.instance],
        "workload": workload,
        "training": {**config["training"], "seed": config["training"]["seed"] + int(wildcards.repeat) - 1},
        "repeat": int(wildcards.repeat),
        "data": {"source": config["data"]["source"], **config["preprocess"]},
        "limits": config["limits"],
    }
    if wildcards.instance in REMOTE:
        spec["aws"] = config["aws"]
    return json.dumps(spec, sort_keys=True)


def train_threads(wildcards):
    """A local run holds every core Snakemake was given, so nothing else it schedules (another run
    above all) shares the machine while it is timed; an EC2 run's launcher only waits."""
    return 1 if wildcards.instance in REMOTE else workflow.cores


def plan_input(wildcards):
    """EC2 runs wait for the plan, which refuses a matrix over budget before anything launches, and
    for the account's set-up (rule aws_setup)."""
    return ["results/plan.json", "results/aws-setup.json"] if wildcards.instance in REMOTE else []


def original_reference():
    keys = ("epochs", "train_images", "validation_images", "batch_size", "price_date")
    return json.dumps({k: config["original_study"].get(k) for k in keys}, sort_keys=True)
