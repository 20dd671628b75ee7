"""The one table of what a run measures: each metric's summary column, unit, Keras log name (where
Keras computes it) and whether repeats reduce it to a mean with a spread. The summary's columns and
the per-instance reduction derive from it; add a metric here and both follow."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str  # the summary column
    unit: str
    keras: str | None  # the name in Keras' epoch logs (the history's), None where kpbench times it
    repeated: bool  # repeats reduce it to a mean over the chosen runs, with min and max over all
    description: str


METRICS = (
    Metric("init_s", "s", None, True, "start to the first training step: imports, data, model, compile"),
    Metric("train_s", "s", None, True, "inside fit: every epoch with its validation"),
    Metric("wall_s", "s", None, True, "the run's whole life on its machine"),
    Metric("images_per_s", "img/s", None, True, "training images per second over the whole fit, validation and the first epoch included"),
    Metric("achieved_gflops", "GFLOP/s", None, True, "training FLOPs per image times images per second"),
    Metric("share_of_matmul", "fraction", None, True, "achieved against this machine's measured matmul peak"),
    Metric("mfu", "fraction", None, True, "achieved against the devices' datasheet peak (model FLOPs utilisation)"),
    Metric("val_rmse_px", "px", "val_rmse", True, "validation RMSE over the present keypoints, last epoch"),
    Metric("val_mae_px", "px", "val_mae", True, "validation mean absolute error, last epoch"),
    Metric("val_pck", "fraction", "val_pck", True, "share of keypoints within the PCK radius, last epoch"),
    Metric("cost_usd", "USD", None, True, "the run's billed time at its instance's price"),
    Metric("stall_s", "s", None, True, "inside fit but outside every epoch"),
    Metric("projected_train_s", "s", None, True, "the original study's workload at this run's measured rates"),
    Metric("projected_cost_usd", "USD", None, True, "the projected run, init included, at its price"),
    Metric("epochs_to_target", "epochs", None, True, "first epoch whose validation RMSE reached the target"),
    Metric("time_to_target_s", "s", None, True, "from fit's start to that epoch's end (DAWNBench)"),
    Metric("cost_to_target_usd", "USD", None, True, "init plus time to target, at the instance's price"),
    Metric("foreign_cpu_share", "fraction", None, False, "CPU time other processes used while the run trained"),
)
REPEATED = tuple(metric.name for metric in METRICS if metric.repeated)
# What Keras logs each epoch, as the history's columns (column → Keras log name): the loss and every
# metric Keras computes, on the training rows, then the same on the validation rows (val_).
_LOGGED = [("loss", "loss")] + [(metric.name[4:], metric.keras[4:]) for metric in METRICS if metric.keras]
KERAS_COLUMNS = dict(_LOGGED + [(f"val_{column}", f"val_{key}") for column, key in _LOGGED])
