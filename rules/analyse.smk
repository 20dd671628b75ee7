# One analysis of the results (kpbench.analysis.analyse), which both the figures and the paper read.


rule analyse:
    input:
        summary=f"{RESULTS}/summary.csv",
        runs=RUN_JSONS,
        model=f"{RESULTS}/model.json",
    output:
        ANALYSIS,
    log:
        "logs/analyse.log",
    benchmark:
        "benchmarks/analyse.tsv"
    conda:
        "../environment.yml"
    params:
        settings=as_json({"analysis": config["analysis"]}),
    script:
        "scripts/stage.py"
