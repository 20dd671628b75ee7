"""What every figure shares: a byte-stable PDF backend, one style, and the helpers that save a
figure or say why there is nothing to draw."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kpbench.core.files import atomic_path  # noqa: E402
from kpbench.core.layout import SOURCE_ORIGINAL, SOURCE_OURS  # noqa: E402

# No dates or versions in the files: the same results give the same bytes.
PDF_METADATA = {"Creator": "kpbench", "Producer": "kpbench", "CreationDate": None}
COLOURS = {SOURCE_OURS: "#1f77b4", SOURCE_ORIGINAL: "#bbbbbb"}

plt.rcParams.update({
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "pdf.fonttype": 42, "svg.hashsalt": "kpbench", "axes.spines.top": False, "axes.spines.right": False,
})


def save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="pdf", metadata=PDF_METADATA, bbox_inches="tight")
    plt.close(fig)


def note(text, out_path):
    """A figure that says why it has nothing to draw, so the paper still builds and says so."""
    fig, ax = plt.subplots(figsize=(3.2, 1.0))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    save(fig, out_path)


def face_grid(count, columns):
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.1))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    return fig, axes[:count]


def spread(rows, column):
    """Error-bar lengths (below, above) from the olympic mean to the slowest and fastest repeat."""
    centre = rows[column].to_numpy(dtype=float)
    low = rows[f"{column}_min"].fillna(rows[column]).to_numpy(dtype=float)
    high = rows[f"{column}_max"].fillna(rows[column]).to_numpy(dtype=float)
    return np.vstack([centre - low, high - centre])
