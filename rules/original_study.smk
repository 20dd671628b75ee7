# The original study's own console logs, parsed into tracked tables (kpbench.analysis.original_logs): every
# epoch of its six runs and each run's facts, which the paper and the prediction's calibration read.
ORIGINAL_LOGS = sorted(
    str(p) for p in Path("config/original_study_logs").glob("*.log.gz")
)


# `ancient`: the logs are facts that never change, so a checkout's file times (which git sets in no
# order) never regenerate the tables; `--forcerun original_logs` does, to the same bytes.
rule original_logs:
    input:
        logs=[ancient(path) for path in ORIGINAL_LOGS],
    output:
        epochs="config/original_study_epochs.csv",
        runs="config/original_study_runs.json",
    log:
        "logs/original_logs.log",
    benchmark:
        "benchmarks/original_logs.tsv"
    conda:
        "../environment.yml"
    shell:
        "python -m kpbench original-logs --logs {input.logs} --epochs {output.epochs} --runs {output.runs}%s"
        % REASON_TO_TERMINAL
