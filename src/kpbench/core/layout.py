"""Names and paths written once: where a run's files live, and what a summary row's source is called.

Importable without TensorFlow or boto3, so the Snakefile, the CLI and the instance all read it.
"""

# Where a summary row comes from: kpbench's own runs, or the original study's published table.
SOURCE_OURS = "kpbench"
SOURCE_ORIGINAL = "original study"


def original_instance_type(instance_name):
    """The EC2 type of an original study row, which names a cluster '<N>x <type>':
    '2x g4dn.xlarge' → 'g4dn.xlarge'."""
    return instance_name.split("x ", 1)[-1]

# Where results live under a results folder (`results/` or a stored campaign's `results/`).
RUN_DIR = "runs/{instance}/r{repeat}"
# A probe of an instance (kpbench.forecast.probe): its run's files and probe.json, in one folder.
PROBE_DIR = "probes/{instance}"
PROBE_FILE = "probe.json"
# What a finished run leaves in its folder.
RUN_JSON = "run.json"  # every timing and measurement of the run
HISTORY_CSV = "history.csv"  # the per-epoch metrics
KEYPOINTS_FILE = "predictions.npz"  # validation faces with their predicted keypoints (not the rental forecast)
RUN_FILES = (RUN_JSON, HISTORY_CSV, KEYPOINTS_FILE)
# Files each worker writes beside its result: the heartbeat with the last epoch, its step times, and
# (in a cluster) its all-reduce sweep; the launcher reads them.
PROGRESS_FILE = "progress.json"
STEPS_FILE = "steps.json"
ALLREDUCE_FILE = "allreduce.json"

# Runs measured outside the pipeline (bench/gpu.py on a lent GPU, other models or precisions), one
# folder each: its run.json and the description (`kpbench describe-model`) of the model it trained.
MEASURED_RUNS = f"bench/measured/*/{RUN_JSON}"
# What setting a machine up took, as bench/setup.py measured it (kpbench.forecast.rental).
SETUP_MEASURED = "bench/measured/setup.json"
# The spot prices `kpbench plan` found in effect (DescribeSpotPriceHistory), under the results folder.
SPOT_SNAPSHOT = "prices/spot.json"
MEASURED_MODEL_FILE = "model.json"
# Batch sweeps (bench/batch_sweep.py), one folder each: a stack's per-step floor on its device kind.
SWEEP_FILE = "sweep.json"
MEASURED_SWEEPS = f"bench/measured/*/{SWEEP_FILE}"


# The paper's figures (paper/build/figures/<name>.pdf), each drawn by kpbench.paper.figures' function of
# that name.
FIGURES = ("sample_faces", "predictions", "learning_curves", "time_cost", "pareto", "scaling", "allreduce",
           "forward_fill", "predicted_measured", "roofline", "rent_pareto", "rent_by_size", "original_curves", "original_epoch_times")


def run_dir(results, instance, repeat):
    """One run's folder: `<results>/runs/<instance>/r<repeat>`."""
    return f"{results}/{RUN_DIR.format(instance=instance, repeat=repeat)}"
