# Probe before you rent (kpbench.forecast.probe): each instance trains a few capped short epochs
# through the backend a run uses, and the rental model extrapolates them to the workload.
# `snakemake probe` probes without any full run; the paper checks the probes against the full runs.

write_if_changed(PROBE_LAUNCH, as_json(launch_settings(probe_caps(config))) + "\n")


rule probe_plan:
    input:
        **PLAN_INPUTS,
    output:
        "results/probes/plan.json",
    log:
        "logs/probe_plan.log",
    benchmark:
        "benchmarks/probe_plan.tsv"
    conda:
        "../environment.yml"
    params:
        settings=as_json(
            {
                key: config[key]
                for key in (
                    "instances",
                    "workload",
                    "workloads",
                    "training",
                    "original_study",
                    "aws",
                    "repeats",
                    "probe",
                    "limits",
                )
            }
        ),
    shell:
        "python -m kpbench plan --probe --settings {params.settings:q} --model {input.model}"
        " --original-model {input.original_model} --catalogue {input.catalogue}"
        " --original-logs {input.original_logs} --measured {input.measured} --setup {input.setup}"
        " --sweeps {input.sweeps} --spot-prices {input.spot_prices} --spot-advisor {input.spot_advisor}"
        " --without-results --out {output} 2>&1 | tee {log}"


rule probe_run:
    input:
        dataset="data/processed/dataset.npz",
        launch=ancient(PROBE_LAUNCH),
        gates=probe_gates,
    output:
        **{
            name.split(".")[0]: f"{PROBE_DIR}/{name}"
            for name in (layout.RUN_JSON, layout.HISTORY_CSV, layout.KEYPOINTS_FILE)
        },
    log:
        "logs/probe/{instance}.log",
    benchmark:
        "benchmarks/probe/{instance}.tsv"
    conda:
        "../environment.yml"
    threads: train_threads
    params:
        spec=probe_measurement,
        out=PROBE_DIR,
    shell:
        ": > {log}; python -m kpbench train --spec {params.spec:q} --launch %s --dataset {input.dataset}"
        " --out {params.out} 2>&1 >> {log} | tee -a {log} >&2" % PROBE_LAUNCH


rule probe_extrapolate:
    input:
        runs=PROBE_RUNS,
        setup=SETUP_MEASURED,
    output:
        json="results/probes/probes.json",
        csv="results/probes/probes.csv",
        each=expand(f"{PROBE_DIR}/{layout.PROBE_FILE}", instance=INSTANCES),
    log:
        "logs/probe_extrapolate.log",
    benchmark:
        "benchmarks/probe_extrapolate.tsv"
    conda:
        "../environment.yml"
    params:
        settings=as_json({"aws": {key: config["aws"][key] for key in RENTAL_PRICES}}),
    shell:
        "python -m kpbench probe --settings {params.settings:q} --runs {input.runs} --setup {input.setup}"
        " --each {output.each} --out {output.json} --csv {output.csv}%s"
        % REASON_TO_TERMINAL


# Matches only probe folders of names no instance row has: the error names the valid ones.
rule unknown_probe:
    input:
        unknown_instance,
    output:
        f"{RESULTS}/probes/{{unknown}}/{{name}}",
    log:
        "logs/probe/{unknown}/{name}.log",
    benchmark:
        "benchmarks/probe/{unknown}/{name}.tsv"
    wildcard_constraints:
        unknown=r"(?!(?:%s)/)[^/]+" % "|".join(map(re.escape, INSTANCES)),
    conda:
        "../environment.yml"
    shell:
        "false"
