"""Paper stage: render paper/templates/**/*.tex.j2 into LaTeX from stored results.

Templates use LaTeX-safe delimiters (\\VAR{...}, \\BLOCK{...}, \\#{...}); every value they print is
escaped unless a filter marked it as LaTeX, so text from configs or results cannot break the build.
"""

import re
from pathlib import Path

import jinja2

from kpbench import KpbenchError
from kpbench.core.files import read_json, write_text
from kpbench.core.layout import SOURCE_ORIGINAL, SOURCE_OURS
from kpbench.core.version import code_label
from kpbench.data.kaggle_format import KEYPOINTS
from kpbench.machine.device_peaks import PEAKS

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIALS))
_OPTION_PATTERN = re.compile(r"--(?=[A-Za-z])")


class Latex(str):
    """Text that is already LaTeX and must not be escaped again."""


def latex_escape(text):
    """Specials escaped; command-line options (`--name`) keep both hyphens and backquotes stay
    backquotes, while a lone `--` (an empty cell) still sets as a dash."""
    escaped = _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIALS[m.group()], str(text))
    return _OPTION_PATTERN.sub("-{}-", escaped).replace("`", r"\textasciigrave{}")


def _finalize(value):
    if isinstance(value, Latex):
        return value
    if value is None or (isinstance(value, float) and value != value):
        return Latex("--")
    return latex_escape(value)


def _missing(value):
    return value is None or (isinstance(value, float) and value != value)


def num(value, digits=2):
    """A number for siunitx: fixed decimals, thousands grouped; '--' when absent."""
    if _missing(value):
        return Latex("--")
    return Latex(rf"\num{{{float(value):.{digits}f}}}")


def integer(value):
    if _missing(value):
        return Latex("--")
    return Latex(rf"\num{{{int(round(float(value)))}}}")


def usd(value, digits=2):
    if _missing(value):
        return Latex("--")
    return Latex(rf"\${float(value):,.{digits}f}")


def percent(value, digits=1):
    if _missing(value):
        return Latex("--")
    return Latex(rf"\SI{{{100 * float(value):.{digits}f}}}{{\percent}}")


def shape(dims):
    return Latex(r"$" + r" \times ".join(str(d) for d in dims) + r"$")


def make_environment(template_dir):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_statement_prefix="%%", line_comment_prefix="%#",
        trim_blocks=True, lstrip_blocks=True, autoescape=False,
        undefined=jinja2.StrictUndefined, finalize=_finalize, keep_trailing_newline=True,
    )
    env.filters.update(num=num, integer=integer, usd=usd, percent=percent, shape=shape,
                       latex=Latex, escape_latex=lambda v: Latex(latex_escape(v)))
    return env


def basis(row):
    """How a ranked row's time and cost were obtained, said where the paper names a winner."""
    if row["source"] == SOURCE_OURS:
        return (f"projected by kpbench from {int(row['train_images']):,} images x {int(row['epochs'])} epochs "
                "measured on this paper's machines")
    note = row.get("note")
    return f"published by the original study{'; ' + note if note and not _missing(note) else ''}"


def mark(run):
    """The symbol beside a run's name in the tables: dagger contended, double dagger resumed,
    section sign made by other code than most runs (kpbench.analysis.analyse.run_marks)."""
    symbols = {"contended": "\\dagger", "resumed": "\\ddagger", "code": "\\S"}
    found = "".join(symbols[m.split()[0].rstrip(":")] for m in run["marks"] if m.split()[0].rstrip(":") in symbols)
    return Latex(f"$^{{{found}}}$" if found else "")


def peak_label(run):
    """The efficiency table's peak cell: GFLOP/s and origin, or the origin alone where it gave none."""
    performance = run["performance"]
    origin = performance.get("peak_origin") or "recorded by name"
    peak = performance.get("peak_tflops")
    return f"{peak * 1000:.0f} ({origin})" if peak and not performance.get("peak_note") else f"-- ({origin})"


def run_peaks(runs):
    """Each device the runs measured MFU against, once: its origin, source and any note on it."""
    found = {}
    for run in runs:
        performance = run["performance"]
        device = performance.get("peak_device") or run["hardware"].get("cpu_model")
        found.setdefault(device, {"device": device, "origin": performance.get("peak_origin") or "named, not described",
                                  "tflops": None if performance.get("peak_note") else performance.get("peak_tflops"),
                                  "source": performance.get("peak_source") or "a peak looked up by the CPU's name "
                                  "(recorded before kpbench described the hardware)", "note": performance.get("peak_note")})
    return sorted(found.values(), key=lambda peak: str(peak["device"]))


def cpu_label(run):
    """The CPU as the run measured it: model name, ids, cores and the ISA features that set its peak."""
    hardware = run["hardware"]
    cpu = hardware.get("cpu")
    if not cpu:
        return f"{hardware.get('cpu_model')} ({hardware['cpu_cores']} logical cores)"
    ids = ", ".join(f"{key} {cpu[key]}" for key in ("vendor", "family", "model") if cpu.get(key) is not None)
    isa = " ".join(feature for feature, present in sorted(cpu["isa"].items()) if present) or "none recorded"
    return (f"{cpu.get('model_name') or hardware.get('cpu_model') or 'unnamed'} ({ids or 'no ids'}; {cpu.get('physical_cores')} cores, "
            f"{cpu.get('logical_cpus')} logical; ISA {isa})")


def quota_refusal(instance_type="p3.2xlarge", region="us-east-1"):
    """What kpbench tells a user whose account EC2 refuses a P instance, as the original study's was."""
    from kpbench.backends.aws.refusals import refusal

    message = ("You have requested more vCPU capacity than your current vCPU limit of 0 allows for the instance "
               "bucket that the specified instance type belongs to.")
    return str(refusal("VcpuLimitExceeded", message, instance_type, region))


def provenance(runs):
    """The provenance appendix as one table: per run only what differs between runs; every value
    all runs share (machine, system, software) stated once beside the table."""
    fields = {
        "Code": code_label,
        "CPU": cpu_label,
        "GPUs": lambda run: ", ".join(run["hardware"]["gpu_names"]) or "none",
        "Operating system": lambda run: run["hardware"].get("os"),
        "Software": lambda run: ", ".join(f"{name} {version}" for name, version in sorted(run["software"].items())),
    }
    values = {name: [read(run) for run in runs] for name, read in fields.items()}
    shared = {name: found[0] for name, found in values.items() if runs and len(set(found)) == 1}
    varying = [name for name in fields if name not in shared]
    rows = [{"instance": run["instance"]["name"], "repeat": run.get("repeat", 1), "seed": run["seed"],
             "config_hash": run["config_hash"], "started": run.get("started_at"),
             "varying": [values[name][index] for name in varying]} for index, run in enumerate(runs)]
    prices = {run["instance"]["name"]: {"name": run["instance"]["name"], "usd_per_hour": run["cost"]["usd_per_hour"],
                                        "date": run["instance"].get("price_date"),
                                        "source": run["instance"].get("price_source")} for run in runs}
    return {"shared": shared, "varying": varying, "rows": rows, "prices": list(prices.values())}


def build_context(analysis_path, stats_path, model_path, settings, forward_fill_path=None,
                  forecast_path=None, original_runs_path=None, original_epochs_path=None, probes_path=None,
                  precision_path=None):
    """Everything the templates print: the analysis (kpbench.analysis.analyse), the dataset's statistics,
    the model and the configuration (the forward-fill measurement is None where a stored campaign
    predates it; so are the predictions where none were made)."""
    analysis, stats = read_json(analysis_path), read_json(stats_path)
    rows = {row["instance"]: row for row in analysis["instances"]}
    ours = [row for row in analysis["instances"] if row["source"] == SOURCE_OURS]
    runs = analysis["runs"]
    instances = [row["instance"] for row in ours]
    keypoint_rows = [{"name": name, "present": stats["keypoints_present"][name],
                      "rmse": [analysis["keypoint_rmse"].get(instance, {}).get(name) for instance in instances]}
                     for name in KEYPOINTS]
    return {
        "settings": settings,
        "stats": stats,
        "model": read_json(model_path),
        "runs": runs,
        "instances": instances,
        "repeats": analysis["repeats"],
        "ours": ours,
        # Fastest to the quality target first; runs that never reached it last.
        "to_target": sorted(ours, key=lambda r: (r["time_to_target_s"] is None, r["time_to_target_s"] or 0.0)),
        "original": [row for row in analysis["instances"] if row["source"] == SOURCE_ORIGINAL],
        "fastest": rows.get(analysis["fastest"]),
        "cheapest": rows.get(analysis["cheapest"]),
        "keypoint_rows": keypoint_rows,
        "scaling": analysis["scaling"],
        "code_versions": analysis["code_versions"],
        "commit": settings.get("commit") or "not recorded",  # the code that builds the paper (the rule's parameter)
        "peaks": PEAKS,
        "run_peaks": run_peaks(runs),
        "peak_label": peak_label,
        "provenance": provenance(runs),
        "basis": basis,
        "mark": mark,
        "marked_runs": [{"instance": run["instance"]["name"], "repeat": run.get("repeat", 1), "marks": run["marks"]}
                        for run in runs if run["marks"]],
        "quota_refusal": quota_refusal(),
        "forward_fill": read_json(forward_fill_path) if forward_fill_path else None,
        "precision": read_json(precision_path) if precision_path else None,
        "best_run": analysis.get("best_run"),  # the run whose predictions the faces figure draws
        # Instances priced as the catalogue's nearest type to the machine they ran on, not as themselves.
        "stand_ins": {run["instance"]["name"]: run["instance"]["price_source"] for run in runs
                      if run["instance"].get("stand_in") and run["instance"].get("price_source")},
        "rent_today": read_json(forecast_path) if forecast_path else None,
        "probes": read_json(probes_path) if probes_path else None,
        "logged": _logged(original_runs_path, original_epochs_path, analysis, model_path, settings),
    }


def _logged(runs_path, epochs_path, analysis, model_path, settings):
    """The original study's runs as their logs show them (None where no parsed logs were given)."""
    if not runs_path or not epochs_path:
        return None
    from kpbench.analysis.original_logs import log_report

    published = {row["instance"]: row for row in analysis["instances"] if row["source"] == SOURCE_ORIGINAL}
    rows = log_report(runs_path, epochs_path, published, read_json(model_path)["layers"],
                      settings["analysis"]["target_rmse_px"])
    return {"rows": rows, "by_instance": {row["instance"]: row for row in rows}}


def render(template_dir, out_dir, context):
    """Render every *.tex.j2 under template_dir to out_dir, keeping the folder layout."""
    template_dir, out_dir = Path(template_dir), Path(out_dir)
    env = make_environment(template_dir)
    written = []
    for template_path in sorted(template_dir.rglob("*.tex.j2")):
        name = template_path.relative_to(template_dir).as_posix()
        try:
            text = env.get_template(name).render(**context)
        except jinja2.TemplateError as exc:
            raise KpbenchError(f"{template_path}: {exc}") from None
        target = out_dir / name[: -len(".j2")]
        write_text(target, text)
        written.append(target)
    return written
