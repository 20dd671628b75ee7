# The paper's figures, from stored results only.


rule render_figures:
    input:
        summary=f"{RESULTS}/summary.csv",
        samples=f"{RESULTS}/dataset/samples.npz",
        runs=RUN_JSONS,
        histories=RUN_FILES["history.csv"],
        predictions=RUN_FILES["predictions.npz"],
        model=f"{RESULTS}/model.json",
        forward_fill=FORWARD_FILL,
        predicted=f"{PREDICTIONS}.json",
    output:
        [report(path, category="Figures") for path in FIGURE_FILES],
    params:
        reference=config["analysis"]["scaling_reference"],
    conda:
        "../environment.yml"
    log:
        "logs/render_figures.log",
    benchmark:
        "benchmarks/render_figures.tsv"
    shell:
        "python -m kpbench figures --summary {input.summary} --samples {input.samples} --runs {input.runs}"
        " --model {input.model} --scaling-reference {params.reference:q} --forward-fill {input.forward_fill}"
        " --predictions {input.predicted} --out paper/build/figures > {log} 2>&1"
