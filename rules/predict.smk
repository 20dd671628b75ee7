# Predict before you rent: every catalogue machine's time and cost for the configured workload, from
# the model's layers, the measured rows (ours, the original study's, bench/measured/) and their
# leave-one-out validation (kpbench.forecast.predict). Reviewer mode predicts from the campaign's results.


rule predict:
    input:
        summary=f"{RESULTS}/summary.csv",
        model=f"{RESULTS}/model.json",
        original_model=ORIGINAL_MODEL,
        runs=RUN_JSONS,
        measured=MEASURED_ELSEWHERE,
        measured_models=MEASURED_MODELS,
        probes=PROBE_RUNS,
        catalogue=CATALOGUE,
        spot_prices=SPOT_PRICES,
        spot_advisor=SPOT_ADVISOR,
        original=config["original_study"]["csv"],
        original_logs="config/original_study_runs.json",
        setup=SETUP_MEASURED,
        sweeps=SWEEPS,
    output:
        json=f"{FORECAST}.json",
        csv=f"{FORECAST}.csv",
    log:
        "logs/predict.log",
    benchmark:
        "benchmarks/predict.tsv"
    conda:
        "../environment.yml"
    params:
        settings=as_json(
            {
                **{
                    key: config[key]
                    for key in ("workload", "workloads", "training", "original_study")
                },
                "aws": {key: config["aws"][key] for key in RENTAL_PRICES},
            }
        ),
    shell:
        "python -m kpbench predict --settings {params.settings:q} --summary {input.summary}"
        " --model {input.model} --original-model {input.original_model} --runs {input.runs} --measured {input.measured}"
        " --probes {input.probes}"
        " --catalogue {input.catalogue} --original-logs {input.original_logs} --setup {input.setup} --sweeps {input.sweeps}"
        " --spot-prices {input.spot_prices} --spot-advisor {input.spot_advisor}"
        " --out {output.json} --csv {output.csv}%s" % REASON_TO_TERMINAL


# The probes extrapolated to the quality target and checked against the full runs of the same
# instance and workload (kpbench.forecast.probe): the paper's funnel, predicted, probed, measured.
rule probe_validation:
    input:
        runs=PROBE_RUNS,
        full_runs=RUN_JSONS,
        summary=f"{RESULTS}/summary.csv",
        setup=SETUP_MEASURED,
    output:
        json=f"{DERIVED}/probe_validation.json",
        csv=f"{DERIVED}/probe_validation.csv",
    log:
        "logs/probe_validation.log",
    benchmark:
        "benchmarks/probe_validation.tsv"
    conda:
        "../environment.yml"
    params:
        settings=as_json({"aws": {key: config["aws"][key] for key in RENTAL_PRICES}}),
    shell:
        "python -m kpbench probe --settings {params.settings:q} --runs {input.runs} --full-runs {input.full_runs}"
        " --summary {input.summary} --setup {input.setup} --out {output.json} --csv {output.csv}%s"
        % REASON_TO_TERMINAL
