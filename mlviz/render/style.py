"""Shared look: one place for colours, sizes and the non-interactive backend."""

from __future__ import annotations

import logging
import textwrap

import matplotlib
import numpy as np

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

# Fonts that draw Chinese, Japanese and Korean names, tried glyph by glyph after DejaVu Sans (matplotlib's font
# fallback); without any of them installed such characters draw as boxes (install e.g. Debian's
# fonts-wqy-microhei or fonts-noto-cjk).
CJK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "Noto Sans CJK TC", "Source Han Sans",
             "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Droid Sans Fallback", "IPAexGothic", "IPAGothic",
             "NanumGothic", "Microsoft YaHei", "SimHei", "Hiragino Sans", "Malgun Gothic", "AppleGothic")


def cjk_fonts() -> list[str]:
    """The CJK fonts of CJK_FONTS that this machine has."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in CJK_FONTS if name in have]


_CJK_HERE = cjk_fonts()
if _CJK_HERE:  # a generic family ("sans-serif") falls back to nothing: the list must name the fonts
    plt.rcParams["font.family"] = ["DejaVu Sans", *_CJK_HERE, "sans-serif"]


class _NoBoldFallbackNotice(logging.Filter):
    """A fallback font without a bold face is drawn regular; matplotlib says so on the user's terminal on
    every bold title ("findfont: Failed to find font weight bold …"). The glyphs are drawn: keep it quiet."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to find font weight" not in record.getMessage()


logging.getLogger("matplotlib.font_manager").addFilter(_NoBoldFallbackNotice())


def figure(width: float, height: float):
    return plt.figure(figsize=(width, height), layout="constrained")


def subplots(nrows: int, ncols: int, width: float, height: float, **kw):
    return plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", squeeze=False, **kw)


def grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols) or 1
    return -(-n // cols), cols


def grid(n: int, max_cols: int, w: float, h: float):
    """A figure of `n` panels of w × h inches, at most `max_cols` to a row: (figure, the n axes); the rest
    of the last row is left blank."""
    rows, cols = grid_shape(n, max_cols)
    fig, axes = subplots(rows, cols, w * cols, h * rows)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


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
    size = fontsize or plt.rcParams["figure.titlesize"]
    size = size if isinstance(size, (int, float)) else 12
    chars = max(20, int(fig.get_figwidth() / (0.55 * size / 72)))
    return fig.suptitle(wrap(text, chars), fontsize=size)


def shorten(text, limit: int = 32) -> str:
    """A label cut to `limit` characters in the middle (both ends of `encoder.block7.dropout` say
    something), so a long name never runs into its neighbour or off the figure; the JSON keeps it whole."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(str(text), max(width, 10), break_long_words=True))


def title(ax, text: str, fontsize: float | None = None, **kw):
    """An axes title wrapped to the axes' width (estimated from the figure layout), so it is never cut."""
    size = fontsize or plt.rcParams["axes.titlesize"]
    size = size if isinstance(size, (int, float)) else 10
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    chars = max(16, int(width_in / (0.55 * size / 72)))
    return ax.set_title(wrap(text, chars), fontsize=size, **kw)


def footnote(fig, text: str, fontsize: float = 8):
    """A note under everything else: part of the constrained layout (so it never sits over an axis
    label) and wrapped to the figure's width."""
    chars = max(30, int(fig.get_figwidth() / (0.55 * fontsize / 72)))
    return fig.supxlabel(wrap(text, chars), fontsize=fontsize, color=MUTED, ha="left", x=0.01)


def precision_fmt(v, ref: float | None = None, sig: int = 2) -> str:
    """A number to the precision its size asks for: `sig` significant digits of `ref` (e.g. the spread
    it is compared with), so 0.001852 prints as 0.0019 and 12.3456 as 12."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    scale = abs(ref if ref else v) or 1.0
    decimals = max(0, sig - 1 - int(np.floor(np.log10(scale))))
    return f"{v:.{decimals}f}"


def axis_length_in(ax, which: str) -> float:
    """The axes' length along x or y in inches (from the layout before drawing: an estimate)."""
    pos = ax.get_position()
    return pos.width * ax.figure.get_figwidth() if which == "x" else pos.height * ax.figure.get_figheight()


def set_ticklabels(ax, which: str, positions, labels, limit: int = 24, fontsize: float = 8) -> None:
    """Tick labels that never collide: cut to `limit` characters, horizontal when they fit side by side,
    otherwise turned 90° and made smaller until each fits its slot."""
    labels = ["\n".join(shorten(part, limit) for part in str(lab).split("\n")) for lab in labels]
    positions = list(positions)
    n = max(len(labels), 1)
    per = axis_length_in(ax, which) * 72 / n  # points per label along the axis
    lines = max((lab.count("\n") + 1 for lab in labels), default=1)
    step = int(np.ceil(4.5 * 1.25 * lines / per)) if per < 4.5 * 1.25 * lines else 1
    if step > 1:  # too many to label each: every step-th (the JSON has them all)
        positions, labels, per = positions[::step], labels[::step], per * step
    longest = max((len(part) for lab in labels for part in lab.split("\n")), default=1)
    size = max(4.5, min(fontsize, per / (1.25 * lines)))
    if which == "y":
        ax.set_yticks(positions, labels, fontsize=size)
    elif longest * 0.62 * fontsize + 4 <= per:
        ax.set_xticks(positions, labels, fontsize=fontsize)
    else:
        ax.set_xticks(positions, labels, rotation=90, fontsize=size, ha="center", va="top")


def chars_along(ax, which: str, fontsize: float = 9, cap: int = 60) -> int:
    """How many characters of a label at `fontsize` fit along the axes' x or y side."""
    return int(max(8, min(cap, axis_length_in(ax, which) * 72 / (0.62 * fontsize))))


def with_interval(v, lo, hi, digits: int = 3) -> str:
    """'0.912 [0.880, 0.940]'; 'n/a' for a missing value; the value alone when the interval is missing."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    s = f"{v:.{digits}f}"
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s
