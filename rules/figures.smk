# The paper's figures, from stored results only.


rule render_figures:
    input:
        summary="results/summary.csv",
        samples="results/dataset/samples.npz",
        runs=RUN_JSONS,
        histories=expand("results/runs/{instance}/history.csv", instance=INSTANCES),
        predictions=expand("results/runs/{instance}/predictions.npz", instance=INSTANCES),
    output:
        FIGURE_FILES,
    conda:
        "../environment.yml"
    log:
        "logs/render_figures.log",
    benchmark:
        "benchmarks/render_figures.tsv"
    shell:
        "python -m kpbench figures --summary {input.summary} --samples {input.samples} --runs {input.runs}"
        " --out paper/build/figures > {log} 2>&1"
