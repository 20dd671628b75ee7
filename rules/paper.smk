# LaTeX sources rendered from templates and results, then compiled with latexmk.
from pathlib import Path

from kpbench.core.version import code_label, code_version

TEMPLATES = sorted(str(p) for p in Path("paper/templates").rglob("*.tex.j2"))
TEX_FILES = [
    str(Path("paper/build") / Path(t).relative_to("paper/templates").with_suffix(""))
    for t in TEMPLATES
]
PAPER_SETTINGS = as_json(
    {
        "paper": config["paper"],
        "data": config["data"],
        "preprocess": config["preprocess"],
        "workload": workload(config),
        "training": config["training"],
        "original_study": config["original_study"],
        "analysis": config["analysis"],
        "limits": {"max_foreign_cpu_share": config["limits"]["max_foreign_cpu_share"]},
        # The paper names the commit that built it: a new commit re-renders it.
        "commit": code_label({"code": code_version()}),
    }
)


rule render_tex:
    input:
        templates=TEMPLATES,
        analysis=ANALYSIS,
        stats=f"{RESULTS}/dataset/stats.json",
        model=f"{RESULTS}/model.json",
        forward_fill=FORWARD_FILL,
        predicted=f"{PREDICTIONS}.json",
        original_runs="config/original_study_runs.json",
        original_epochs="config/original_study_epochs.csv",
    output:
        TEX_FILES,
    params:
        settings=PAPER_SETTINGS,
    conda:
        "../environment.yml"
    log:
        "logs/render_tex.log",
    benchmark:
        "benchmarks/render_tex.tsv"
    shell:
        "python -m kpbench paper --analysis {input.analysis} --stats {input.stats} --model {input.model}"
        " --forward-fill {input.forward_fill} --predictions {input.predicted} --settings {params.settings:q}"
        " --original-runs {input.original_runs} --original-epochs {input.original_epochs}"
        " --templates paper/templates"
        " --out paper/build > {log} 2>&1"


rule compile_pdf:
    input:
        TEX_FILES,
        FIGURE_FILES,
    output:
        report("paper/build/paper.pdf", category="Paper"),
    conda:
        "../environment.yml"
    log:
        "logs/compile_pdf.log",
    benchmark:
        "benchmarks/compile_pdf.tsv"
    shell:
        "latexmk -pdf -interaction=nonstopmode -halt-on-error -cd paper/build/paper.tex > {log} 2>&1"
