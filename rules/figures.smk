# The paper's figures, from the analysis and the run files it names.


rule render_figures:
    input:
        analysis=ANALYSIS,
        samples=f"{RESULTS}/dataset/samples.npz",
        histories=RUN_FILES[layout.HISTORY_CSV],
        predictions=RUN_FILES[layout.KEYPOINTS_FILE],
        forward_fill=FORWARD_FILL,
        predicted=f"{PREDICTIONS}.json",
        original_epochs="config/original_study_epochs.csv",
    output:
        [report(path, category="Figures") for path in FIGURE_FILES],
    conda:
        "../environment.yml"
    log:
        "logs/render_figures.log",
    benchmark:
        "benchmarks/render_figures.tsv"
    shell:
        "python -m kpbench figures --analysis {input.analysis} --samples {input.samples}"
        " --histories {input.histories} --predictions-files {input.predictions}"
        " --forward-fill {input.forward_fill} --predictions {input.predicted}"
        " --original-epochs {input.original_epochs} --out paper/build/figures > {log} 2>&1"
