# The paper's figures, from the analysis and the run files it names.


rule render_figures:
    input:
        analysis=ANALYSIS,
        samples=f"{RESULTS}/dataset/samples.npz",
        histories=RUN_FILES[layout.HISTORY_CSV],
        keypoints=RUN_FILES[layout.KEYPOINTS_FILE],
        forward_fill=FORWARD_FILL,
        forecast=f"{FORECAST}.json",
        original_epochs="config/original_study_epochs.csv",
    output:
        [report(path, category="Figures") for path in FIGURE_FILES],
    log:
        "logs/render_figures.log",
    benchmark:
        "benchmarks/render_figures.tsv"
    conda:
        "../environment.yml"
    script:
        "scripts/stage.py"
