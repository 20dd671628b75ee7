# One training run per configured instance, and the model description the paper's layer table uses.


rule train:
    input:
        dataset="data/processed/dataset.npz",
    output:
        run="results/runs/{instance}/run.json",
        history="results/runs/{instance}/history.csv",
        predictions="results/runs/{instance}/predictions.npz",
    params:
        spec=run_spec,
    conda:
        "../environment.yml"
    log:
        "logs/train/{instance}.log",
    benchmark:
        "benchmarks/train/{instance}.tsv"
    shell:
        "python -m kpbench train --spec {params.spec:q} --dataset {input.dataset}"
        " --out results/runs/{wildcards.instance} > {log} 2>&1"


rule describe_model:
    output:
        "results/model.json",
    conda:
        "../environment.yml"
    log:
        "logs/describe_model.log",
    benchmark:
        "benchmarks/describe_model.tsv"
    shell:
        "python -m kpbench describe-model --out {output} > {log} 2>&1"
