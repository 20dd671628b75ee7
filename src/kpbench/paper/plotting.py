"""What every figure shares: a byte-stable PDF backend, one style, and the helpers that save a
figure or say why there is nothing to draw."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

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


def plain_log_ticks(axis):
    """Ticks at 1, 2 and 5 of each decade written as plain numbers, and no labels on the minor ticks,
    whose scientific labels overprint each other on a short log axis."""
    axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def label_points(ax, points, fontsize=5, gap=3):
    """Each (x, y, name) labelled beside its point, right or left of it, moved up or down by whole lines
    until it covers no marker and no label placed before it (staying inside the axes where it can), with
    a thin line back to its point when moved; `gap` points clear of the point's centre (more for larger
    markers). Call after the axes' scales and limits are final: the places are worked out on the drawn
    figure."""
    ax.figure.canvas.draw()
    scale = ax.figure.dpi / 72  # display pixels per point
    line, placed = fontsize * 1.25 * scale, []
    frame = ax.get_window_extent()
    bottom, top = frame.y0 + line / 2, frame.y1 - line / 2
    # Every marker is taken before any label, so that no label's box hides another point.
    for x, y, _ in points:
        px, py = ax.transData.transform((x, y))
        placed.append((px - 3 * scale, py, 6 * scale))
    for x, y, name in sorted(points, key=lambda p: -ax.transData.transform((p[0], p[1]))[1]):
        px, py = ax.transData.transform((x, y))
        width = len(name) * fontsize * 0.62 * scale  # a generous mean glyph width: no two labels touch

        def box(side, shift):
            return (px + gap * scale if side > 0 else px - gap * scale - width, py + shift * line)

        def free(side, shift):
            left, low = box(side, shift)
            return not any(abs(low - other_y) < line and left < other_x + other_w and other_x < left + width
                           for other_x, other_y, other_w in placed)

        candidates = [(side, sign * k) for k in range(3 * len(points) + 1) for sign in (-1, 1) for side in (1, -1)]
        inside = [c for c in candidates if bottom <= box(*c)[1] <= top and frame.x0 <= box(*c)[0] <= frame.x1 - width]
        side, shift = next((c for c in inside + candidates if free(*c)), (1, 0))
        placed.append((*box(side, shift), width))
        ax.annotate(name, (x, y), xytext=(gap * side, shift * line / scale), textcoords="offset points",
                    fontsize=fontsize, va="center", ha="left" if side > 0 else "right",
                    bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                    arrowprops={"arrowstyle": "-", "linewidth": 0.3, "color": "#999999"} if shift else None)
