# Kaggle CSVs (or their synthetic stand-in) → checked masked arrays, statistics and sample faces.


rule fetch_data:
    input:
        local_copy,
    output:
        **({"truth": "data/raw/truth.npz"} if SYNTHETIC else {}),
        training="data/raw/training.csv",
        test="data/raw/test.csv",
        lookup="data/raw/IdLookupTable.csv",
    log:
        "logs/fetch_data.log",
    benchmark:
        "benchmarks/fetch_data.tsv"
    conda:
        "../environment.yml"
    params:
        data_config=as_json(config["data"]),
    shell:
        "python -m kpbench fetch --data-config {params.data_config:q} --out data/raw%s"
        % REASON_TO_TERMINAL


rule preprocess:
    input:
        rules.fetch_data.output,
    output:
        dataset="data/processed/dataset.npz",
        stats="results/dataset/stats.json",
        samples="results/dataset/samples.npz",
    log:
        "logs/preprocess.log",
    benchmark:
        "benchmarks/preprocess.tsv"
    conda:
        "../environment.yml"
    params:
        fraction=config["preprocess"]["validation_fraction"],
        seed=config["preprocess"]["seed"],
    shell:
        "python -m kpbench preprocess --raw data/raw --dataset {output.dataset} --stats {output.stats}"
        " --samples {output.samples} --validation-fraction {params.fraction} --seed {params.seed}%s"
        % REASON_TO_TERMINAL
