# kpbench: train the facial-keypoint CNN on every configured instance, time and price it, and build
# the paper from the results. Targets: paper (the PDF), figures, results (summary.csv).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "paper/report/workflow.rst"


include: "rules/common.smk"


# A stored campaign brings its results: the stages that make them are left out altogether.
if not CAMPAIGN:

    include: "rules/data.smk"
    include: "rules/train.smk"
    include: "rules/aggregate.smk"
    include: "rules/forward_fill.smk"
    include: "rules/probe.smk"

    # What mixed_bfloat16 saves is measured on a local single-worker instance only.
    if PRECISION_RUN:

        include: "rules/precision.smk"


include: "rules/original_study.smk"
include: "rules/analyse.smk"
include: "rules/predict.smk"
include: "rules/figures.smk"
include: "rules/paper.smk"


rule paper:
    default_target: True
    input:
        "paper/build/paper.pdf",


rule figures:
    input:
        FIGURE_FILES,


rule probe:
    input:
        "results/probes/probes.json",


rule results:
    input:
        f"{RESULTS}/summary.csv",
