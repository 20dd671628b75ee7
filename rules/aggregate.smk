# Every run and the original study's published rows → one summary table.


rule aggregate:
    input:
        runs=RUN_JSONS,
        histories=RUN_FILES[layout.HISTORY_CSV],
        original=config["original_study"]["csv"],
        original_model=ORIGINAL_MODEL,
        catalogue=CATALOGUE,
    output:
        "results/summary.csv",
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    conda:
        "../environment.yml"
    params:
        reference=original_reference(),
        target=config["analysis"]["target_rmse_px"],
    script:
        "scripts/stage.py"
