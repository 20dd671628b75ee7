# One training run per configured instance, and the model description the paper's layer table uses.

# What the plan and the account's set-up read: a change elsewhere (the paper's title) replans nothing.
PLAN_SETTINGS = as_json(
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
        )
    }
)


# How runs are launched (limits, AWS plumbing), written on every call rather than by a rule: a rule
# would rerun whenever they change, and Snakemake (9.27, dag.py update_needrun) then skips checking the
# jobs below it whose input from it is ancient, so runs that a configuration switched on in the same
# call (the EC2 matrix) were planned only by the second call.
write_if_changed(LAUNCH, as_json(launch_settings(config)) + "\n")


# The plan runs before any EC2 run (they wait for it), so it prices from what was measured before this
# campaign: the original study's rows and logs, and the runs measured elsewhere.
rule plan:
    input:
        **PLAN_INPUTS,
    output:
        plan="results/plan.json",
        spot=SPOT_SNAPSHOT,
    log:
        "logs/plan.log",
    benchmark:
        "benchmarks/plan.tsv"
    conda:
        "../environment.yml"
    params:
        settings=PLAN_SETTINGS,
    shell:
        "python -m kpbench plan --settings {params.settings:q} --model {input.model} --original-model {input.original_model}"
        " --catalogue {input.catalogue} --original-logs {input.original_logs} --measured {input.measured}"
        " --setup {input.setup} --sweeps {input.sweeps} --spot-advisor {input.spot_advisor} --without-results"
        " --spot-snapshot {output.spot} --out {output.plan} 2>&1 | tee {log}"


# The account's long-lived resources (bucket, instance role and profile), made once before any EC2
# run: parallel runs never race to create them, and need no IAM permission themselves.
rule aws_setup:
    output:
        "results/aws-setup.json",
    log:
        "logs/aws_setup.log",
    benchmark:
        "benchmarks/aws_setup.tsv"
    conda:
        "../environment.yml"
    params:
        aws=as_json(config["aws"]),
    shell:
        "python -m kpbench aws-setup --aws {params.aws:q} --out {output} 2>&1 | tee {log}"


rule train:
    input:
        dataset="data/processed/dataset.npz",
        launch=launch_input,
    output:
        **{name.split(".")[0]: f"{RUN_DIR}/{name}" for name in layout.RUN_FILES},
    log:
        "logs/train/{instance}/r{repeat}.log",
    benchmark:
        "benchmarks/train/{instance}/r{repeat}.tsv"
    conda:
        "../environment.yml"
    threads: train_threads
    params:
        spec=measurement,
        out=RUN_DIR,
    # The full detail goes to the log; progress lines and errors (stderr) to the log and the terminal.
    shell:
        ": > {log}; python -m kpbench train --spec {params.spec:q} --launch %s --dataset {input.dataset}"
        " --out {params.out} 2>&1 >> {log} | tee -a {log} >&2" % LAUNCH


# Matches only run folders of names no instance row has: the error names the valid ones.
rule unknown_instance:
    input:
        unknown_instance,
    output:
        str(Path(layout.run_dir(RESULTS, "{unknown}", "{repeat}"), layout.RUN_JSON)),
    log:
        "logs/train/{unknown}/r{repeat}.log",
    benchmark:
        "benchmarks/train/{unknown}/r{repeat}.tsv"
    wildcard_constraints:
        unknown=r"(?!(?:%s)/)[^/]+" % "|".join(map(re.escape, INSTANCES)),
    conda:
        "../environment.yml"
    shell:
        "false"


rule describe_model:
    output:
        "results/model.json",
    log:
        "logs/describe_model.log",
    benchmark:
        "benchmarks/describe_model.tsv"
    conda:
        "../environment.yml"
    params:
        model=workload(config)["model"],
    shell:
        "python -m kpbench describe-model --model {params.model} --out {output}%s"
        % REASON_TO_TERMINAL


# The original study's rows are priced and scored (MFU) with its own CNN, whatever model ours train.
rule describe_original_model:
    output:
        "results/original_model.json",
    log:
        "logs/describe_original_model.log",
    benchmark:
        "benchmarks/describe_original_model.tsv"
    conda:
        "../environment.yml"
    params:
        model=REFERENCE_MODEL,
    shell:
        "python -m kpbench describe-model --model {params.model} --out {output}%s"
        % REASON_TO_TERMINAL
