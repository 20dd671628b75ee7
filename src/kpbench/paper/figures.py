"""Figures stage: vector PDFs from the analysis and the files it names, never computed again here
(no data, no TensorFlow), byte-stable. Each figure is drawn by the function of its name; the list of
names is kpbench.core.layout.FIGURES, which the workflow's outputs use too."""

from pathlib import Path

import pandas as pd

from kpbench.core.files import read_json
from kpbench.core.layout import FIGURES
from kpbench.paper import figures_analysis as drawn_analysis
from kpbench.paper import figures_original as drawn_original
from kpbench.paper import figures_results as drawn_results

DRAW = {name: next(getattr(module, name) for module in (drawn_results, drawn_analysis, drawn_original)
                   if hasattr(module, name)) for name in FIGURES}


def _run_files(analysis, paths):
    """(instance, repeat) → the given file of that run, matched by the run's folder."""
    by_folder = {str(Path(path).parent): Path(path) for path in paths}
    return {(run["instance"]["name"], run.get("repeat", 1)): by_folder[run["folder"]]
            for run in analysis["runs"] if run["folder"] in by_folder}


def render_all(analysis_path, samples_path, history_paths, prediction_paths, out_dir, forward_fill_path=None,
               forecast_path=None, original_epochs_path=None):
    """Every figure of the paper; our repeated runs appear as olympic means with their spread as error
    bars, and the predictions figure shows the analysis's best run."""
    analysis, out_dir = read_json(analysis_path), Path(out_dir)
    summary = pd.DataFrame(analysis["instances"])
    histories = {key: pd.read_csv(path) for key, path in _run_files(analysis, history_paths).items()}
    best = analysis["best_run"]
    predicted = read_json(forecast_path) if forecast_path else None
    logged = pd.read_csv(original_epochs_path) if original_epochs_path else None
    inputs = {
        "sample_faces": samples_path,
        "predictions": _run_files(analysis, prediction_paths)[(best["instance"], best["repeat"])] if best else None,
        "learning_curves": histories,
        "time_cost": summary,
        "pareto": summary,
        "scaling": analysis["scaling"],
        "allreduce": analysis["scaling"],
        "forward_fill": read_json(forward_fill_path) if forward_fill_path else None,
        "predicted_measured": predicted,
        "roofline": predicted,
        "rent_pareto": predicted,
        "rent_by_size": predicted,
        "original_curves": logged,
        "original_epoch_times": logged,
    }
    for name, draw in DRAW.items():
        draw(inputs[name], out_dir / f"{name}.pdf")
    return best
