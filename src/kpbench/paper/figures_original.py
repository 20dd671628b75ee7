"""The original study's runs as its own logs show them (config/original_study_epochs.csv): its
validation curves and its time per epoch across each run."""

import matplotlib

from kpbench.paper.plotting import note, plt, save


def original_curves(epochs, out_path):
    """Validation RMSE (square root of the study's validation MSE, on its own forward-filled labels)
    against epoch and against wall-clock seconds (its epochs' seconds added up), one line per run."""
    if epochs is None or epochs.empty:
        note("no parsed log of the original study", out_path)
        return
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(6.4, 2.4), sharey=True)
    for index, (instance, rows) in enumerate(epochs.groupby("instance", sort=True)):
        for ax, x in ((by_epoch, rows["epoch"]), (by_time, rows["seconds"].cumsum())):
            ax.plot(x, rows["val_rmse_px"], color=f"C{index}", linewidth=0.9, label=instance)
    by_epoch.set_yscale("log")
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("wall-clock seconds since fit began (its epochs' seconds)")
    by_time.set_xscale("log")
    by_epoch.set_ylabel("validation RMSE (pixels, its labels)")
    for ax in (by_epoch, by_time):
        ax.grid(True, linewidth=0.3, alpha=0.5)
    by_time.legend(frameon=False, fontsize=6)
    save(fig, out_path)


def original_epoch_times(epochs, out_path):
    """Seconds per epoch across each run: the first epoch's warm-up, the steady state and any stall."""
    if epochs is None or epochs.empty:
        note("no parsed log of the original study", out_path)
        return
    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    for index, (instance, rows) in enumerate(epochs.groupby("instance", sort=True)):
        ax.plot(rows["epoch"], rows["seconds"], color=f"C{index}", linewidth=0.9, marker=".", ms=2, label=instance)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("epoch")
    ax.set_ylabel("seconds (whole seconds, as Keras printed them)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, fontsize=6, ncol=3)
    save(fig, out_path)
