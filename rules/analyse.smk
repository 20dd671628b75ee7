# One analysis of the results (kpbench.analysis.analyse), which both the figures and the paper read.


rule analyse:
    input:
        summary=f"{RESULTS}/summary.csv",
        runs=RUN_JSONS,
        model=f"{RESULTS}/model.json",
    output:
        ANALYSIS,
    params:
        settings=as_json({"analysis": config["analysis"]}),
    conda:
        "../environment.yml"
    log:
        "logs/analyse.log",
    benchmark:
        "benchmarks/analyse.tsv"
    shell:
        "python -m kpbench analyse --summary {input.summary} --runs {input.runs} --model {input.model}"
        " --settings {params.settings:q} --out {output} > {log} 2>&1"
