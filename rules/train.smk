# One training run per configured instance, and the model description the paper's layer table uses.


rule plan:
    input:
        model="results/model.json",
        catalogue="config/catalogue.csv",
    output:
        "results/plan.json",
    params:
        settings=json.dumps(config, sort_keys=True),
    conda:
        "../environment.yml"
    log:
        "logs/plan.log",
    benchmark:
        "benchmarks/plan.tsv"
    shell:
        "python -m kpbench plan --settings {params.settings:q} --model {input.model} --catalogue {input.catalogue}"
        " --out {output} 2>&1 | tee {log}"


# The account's long-lived resources (bucket, instance role and profile), made once before any EC2
# run: parallel runs never race to create them, and need no IAM permission themselves.
rule aws_setup:
    output:
        "results/aws-setup.json",
    params:
        settings=json.dumps(config, sort_keys=True),
    conda:
        "../environment.yml"
    log:
        "logs/aws_setup.log",
    benchmark:
        "benchmarks/aws_setup.tsv"
    shell:
        "python -m kpbench aws-setup --settings {params.settings:q} --out {output} 2>&1 | tee {log}"


rule train:
    input:
        dataset="data/processed/dataset.npz",
        plan=plan_input,
    output:
        run="results/runs/{instance}/r{repeat}/run.json",
        history="results/runs/{instance}/r{repeat}/history.csv",
        predictions="results/runs/{instance}/r{repeat}/predictions.npz",
    params:
        spec=run_spec,
    threads: train_threads
    conda:
        "../environment.yml"
    log:
        "logs/train/{instance}/r{repeat}.log",
    benchmark:
        "benchmarks/train/{instance}/r{repeat}.tsv"
    # The full detail goes to the log; progress lines and errors (stderr) to the log and the terminal.
    shell:
        ": > {log}; python -m kpbench train --spec {params.spec:q} --dataset {input.dataset}"
        " --out results/runs/{wildcards.instance}/r{wildcards.repeat} 2>&1 >> {log} | tee -a {log} >&2"


rule describe_model:
    output:
        "results/model.json",
    params:
        model=config["workloads"][config["workload"]]["model"],
    conda:
        "../environment.yml"
    log:
        "logs/describe_model.log",
    benchmark:
        "benchmarks/describe_model.tsv"
    shell:
        "python -m kpbench describe-model --model {params.model} --out {output} > {log} 2>&1"
