# Kaggle CSVs (or their synthetic stand-in) → checked masked arrays, statistics and sample faces.


rule fetch_data:
    input:
        local_copy,
    output:
        training="data/raw/training.csv",
        test="data/raw/test.csv",
        lookup="data/raw/IdLookupTable.csv",
        **({"truth": "data/raw/truth.npz"} if SYNTHETIC else {}),
    params:
        data_config=as_json(config["data"]),
    conda:
        "../environment.yml"
    log:
        "logs/fetch_data.log",
    benchmark:
        "benchmarks/fetch_data.tsv"
    shell:
        "python -m kpbench fetch --data-config {params.data_config:q} --out data/raw > {log} 2>&1"


rule preprocess:
    input:
        rules.fetch_data.output,
    output:
        dataset="data/processed/dataset.npz",
        stats="results/dataset/stats.json",
        samples="results/dataset/samples.npz",
    params:
        fraction=config["preprocess"]["validation_fraction"],
        seed=config["preprocess"]["seed"],
    conda:
        "../environment.yml"
    log:
        "logs/preprocess.log",
    benchmark:
        "benchmarks/preprocess.tsv"
    shell:
        "python -m kpbench preprocess --raw data/raw --dataset {output.dataset} --stats {output.stats}"
        " --samples {output.samples} --validation-fraction {params.fraction} --seed {params.seed}"
        " > {log} 2>&1"
