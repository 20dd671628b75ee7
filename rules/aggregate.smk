# Every run and the original study's published rows → one summary table.


rule aggregate:
    input:
        runs=RUN_JSONS,
        original=config["original_study"]["csv"],
    output:
        "results/summary.csv",
    params:
        reference=original_reference(),
    conda:
        "../environment.yml"
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    shell:
        "python -m kpbench aggregate --runs {input.runs} --original {input.original}"
        " --reference {params.reference:q} --out {output} > {log} 2>&1"
