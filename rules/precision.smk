# What mixed_bfloat16 would save on this CPU: the reference run trained again in it where the CPU has
# bfloat16 units, else a record of why not (kpbench.analysis.precision).


rule precision:
    input:
        reference=f"{layout.run_dir('results', PRECISION_RUN, 1)}/run.json",
        dataset="data/processed/dataset.npz",
        launch=ancient(LAUNCH),
    output:
        json="results/precision.json",
        run=directory("results/precision/mixed_bfloat16"),
    log:
        "logs/precision.log",
    benchmark:
        "benchmarks/precision.tsv"
    conda:
        "../environment.yml"
    # A timed run: it holds every core, as the train rule's local runs do.
    threads: workflow.cores
    params:
        spec=as_json(run_spec(config, PRECISION_RUN, 1)),
    shell:
        ": > {log}; python -m kpbench precision --reference {input.reference} --spec {params.spec:q}"
        " --launch {input.launch} --dataset {input.dataset} --run-dir {output.run} --out {output.json}"
        " 2>&1 >> {log} | tee -a {log} >&2"
