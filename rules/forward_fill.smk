# What the original study's forward fill costs: the labels it invents and, on synthetic faces, its
# model against kpbench's masked one, both scored against the true keypoints (kpbench.analysis.forward_fill).

# The masked model compared is a finished run: the first single-worker instance's first repeat.
FORWARD_FILL_RUN = next(
    (name for name, row in INSTANCES.items() if row["workers"] == 1),
    next(iter(INSTANCES)),
)


rule forward_fill:
    input:
        **(
            {
                "truth": "data/raw/truth.npz",
                "dataset": "data/processed/dataset.npz",
                "run": f"{layout.run_dir('results', FORWARD_FILL_RUN, 1)}/run.json",
                "predictions": f"{layout.run_dir('results', FORWARD_FILL_RUN, 1)}/predictions.npz",
            }
            if SYNTHETIC
            else {}
        ),
        training="data/raw/training.csv",
    output:
        "results/forward_fill.json",
    log:
        "logs/forward_fill.log",
    benchmark:
        "benchmarks/forward_fill.tsv"
    conda:
        "../environment.yml"
    params:
        source=config["data"]["source"],
    # It trains for minutes: as in the train rule, stderr (one line per epoch) reaches the terminal too.
    shell:
        ": > {log}; python -m kpbench forward-fill --training {input.training} --source {params.source:q}"
        + (
            " --truth {input.truth} --dataset {input.dataset} --run {input.run}"
            if SYNTHETIC
            else ""
        )
        + " --out {output} 2>&1 >> {log} | tee -a {log} >&2"
