# LaTeX sources rendered from templates and results, then compiled with latexmk.
from pathlib import Path

from kpbench.core.version import code_label, code_version

TEMPLATE_DIR, BUILD_DIR = "paper/templates", "paper/build"
TEMPLATES = sorted(str(p) for p in Path(TEMPLATE_DIR).rglob("*.tex.j2"))
TEX_FILES = [
    str(Path(BUILD_DIR) / Path(t).relative_to(TEMPLATE_DIR).with_suffix(""))
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
        precision=PRECISION,
        forecast=f"{FORECAST}.json",
        probes=PROBE_VALIDATION,
        original_runs="config/original_study_runs.json",
        original_epochs="config/original_study_epochs.csv",
    output:
        TEX_FILES,
    log:
        "logs/render_tex.log",
    benchmark:
        "benchmarks/render_tex.tsv"
    conda:
        "../environment.yml"
    params:
        settings=PAPER_SETTINGS,
    script:
        "scripts/stage.py"


rule compile_pdf:
    input:
        main=f"{BUILD_DIR}/paper.tex",
        sections=TEX_FILES,
        figures=FIGURE_FILES,
    output:
        report(f"{BUILD_DIR}/paper.pdf", category="Paper"),
    log:
        "logs/compile_pdf.log",
    benchmark:
        "benchmarks/compile_pdf.tsv"
    conda:
        "../environment.yml"
    shell:
        "latexmk -pdf -interaction=nonstopmode -halt-on-error -cd {input.main} > {log} 2>&1"
        " || (grep -m 1 -A 1 '^!' {log} >&2; exit 1)"
