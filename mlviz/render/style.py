"""Shared look: one place for colours, sizes and the non-interactive backend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

OBJECTIVE_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"
HIGHLIGHT = "#d62728"
PRIMARY = "#1f77b4"
SECONDARY = "#ff7f0e"
MUTED = "#7f7f7f"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
DPI = 110

plt.rcParams.update(
    {
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "legend.fontsize": 8,
        "figure.titlesize": 12,
    }
)


def figure(width: float, height: float):
    return plt.figure(figsize=(width, height), layout="constrained")


def subplots(nrows: int, ncols: int, width: float, height: float, **kw):
    return plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", squeeze=False, **kw)


def grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols) or 1
    return -(-n // cols), cols


def direction_word(mode: str) -> str:
    return "lower is better" if mode == "min" else "higher is better"


def empty_axis(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color=MUTED, wrap=True)


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def draw_panels(fig, slots, panels, results: dict, keep_titles=()) -> None:
    """A dashboard's panels: `panels` as (result key, draw(ax, result), title) into the grid `slots`; a
    panel whose analysis was skipped says so instead of being left blank."""
    for slot, (key, draw, title) in zip(slots, panels, strict=True):
        ax = fig.add_subplot(slot)
        result = results.get(key)
        if result is None:
            empty_axis(ax, f"{title}: not available")
            continue
        draw(ax, result)
        if key not in keep_titles:
            ax.set_title(title)


def suptitle(fig, text: str, fontsize: float | None = None):
    """A figure title wrapped to the figure's width, so a long one is never cut off at the sides."""
    import textwrap

    size = fontsize or plt.rcParams["figure.titlesize"]
    size = size if isinstance(size, (int, float)) else 12
    chars = max(20, int(fig.get_figwidth() / (0.55 * size / 72)))
    return fig.suptitle("\n".join(textwrap.wrap(text, chars)), fontsize=size)
