"""The stages only the workflow calls (aggregate, analyse, figures, paper), run by Snakemake's
`script:` directive: each reads its files from the rule itself (`snakemake.input`, `.params`,
`.output`), so a path is written once, in the rule, and never again as a flag and an option.

What users call (`fetch`, `preprocess`, `predict`, `plan`, ...) and `train`, whose process start is
timed, stay commands of `python -m kpbench`.
"""

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path

from kpbench import KpbenchError
from kpbench.core.read_trace import trace_reads


def _optional(paths):
    """A rule input that may be absent (a campaign stored before it existed): its one path, or None."""
    return paths[0] if len(paths) else None


def aggregate(input, params, output):
    from kpbench.analysis.aggregate import summarise
    from kpbench.core.files import read_json

    reference = {**json.loads(params.reference),
                 "training_flops_per_image": read_json(input.original_model)["training_flops_per_image"]}
    frame = summarise(list(input.runs), input.original, reference, output[0], params.target, input.catalogue)
    print(f"{len(frame)} rows written to {output[0]}")


def analyse(input, params, output):
    from kpbench.analysis.analyse import analyse as analysed
    from kpbench.core.files import write_json

    result = analysed(input.summary, list(input.runs), input.model, json.loads(params.settings))
    write_json(output[0], result)
    print(f"fastest {result['fastest']}, cheapest {result['cheapest']}; "
          f"{len(result['code_versions']['versions'])} code version(s)")


def render_figures(input, params, output):
    from kpbench.paper.figures import render_all

    render_all(input.analysis, input.samples, list(input.histories), list(input.keypoints), Path(output[0]).parent,
               forward_fill_path=_optional(input.forward_fill), forecast_path=input.forecast,
               original_epochs_path=input.original_epochs)


def render_tex(input, params, output):
    from kpbench.paper.render import build_context, render

    context = build_context(input.analysis, input.stats, input.model, json.loads(params.settings),
                            forward_fill_path=_optional(input.forward_fill), forecast_path=input.forecast,
                            precision_path=_optional(input.precision), original_runs_path=input.original_runs,
                            original_epochs_path=input.original_epochs, probes_path=_optional(input.probes))
    # Every template under the folder the templates share renders to the folder the outputs share.
    for path in render(os.path.commonpath(input.templates), os.path.commonpath(output), context):
        print(path)


STAGES = {stage.__name__: stage for stage in (aggregate, analyse, render_figures, render_tex)}


def run_rule(snakemake):
    """Run the stage of the rule's name with its output and errors in the rule's log; the one-line
    reason of a failure also reaches the terminal, where Snakemake's own report would only point at
    the log."""
    trace_reads(snakemake.rule)
    terminal = sys.stderr
    with open(snakemake.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            STAGES[snakemake.rule](snakemake.input, snakemake.params, snakemake.output)
        except KpbenchError as error:
            reason = f"kpbench {snakemake.rule}: error: {error}"
        except Exception:  # a bug, not bad input: the traceback stays in the log
            traceback.print_exc()
            reason = f"kpbench {snakemake.rule}: internal error (traceback in {snakemake.log[0]})"
        else:
            return
        print(reason, file=log)
    print(reason, file=terminal)
    raise SystemExit(1)
