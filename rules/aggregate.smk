# Every run and the original study's published rows → one summary table.


rule aggregate:
    input:
        runs=RUN_JSONS,
        histories=RUN_FILES[layout.HISTORY_CSV],
        original=config["original_study"]["csv"],
        original_model=ORIGINAL_MODEL,
    output:
        "results/summary.csv",
    params:
        reference=original_reference(),
        target=config["analysis"]["target_rmse_px"],
    conda:
        "../environment.yml"
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    shell:
        "python -m kpbench aggregate --runs {input.runs} --original {input.original}"
        " --reference {params.reference:q} --target-rmse {params.target} --original-model {input.original_model}"
        " --out {output} > {log} 2>&1"
