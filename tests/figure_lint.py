"""A figure linter: what a reader notices first in a figure (clipped or overlapping text, an absurd size,
a caption promising a mark that is not drawn), found by looking at the drawn artists.

    problems = lint_figure(fig, caption)   # [] when the figure is clean

Used by tests/test_figure_lint.py on every registered figure and hostile fixture sweeps; reusable for any
matplotlib figure.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.lines import Line2D
from matplotlib.text import Text

MAX_SIDE_PX = 4000
MIN_SIDE_PX = 120
MAX_ASPECT = 4.0
TOLERANCE_PX = 1.0  # anti-aliasing: a pixel's overlap or overhang is not visible
MAX_REPORTED = 6  # problems of one kind listed per figure (the count says the rest)


def _drawn_tick_labels(ax) -> list[Text]:
    """Tick labels matplotlib actually draws (Axis.get_ticklabels also returns ticks outside the view)."""
    out = []
    for axis in (ax.xaxis, ax.yaxis):
        if not axis.get_visible():
            continue
        for tick in axis._update_ticks():
            for label, on in ((tick.label1, tick.label1.get_visible()), (tick.label2, tick.label2.get_visible())):
                if on:
                    out.append(label)
    return out


def visible_texts(fig) -> list[Text]:
    """Every text a reader sees: titles, labels, annotations, legends, table cells, drawn tick labels."""
    tick_labels = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_labels.update((id(tick.label1), id(tick.label2)))
    texts = [t for t in fig.findobj(Text) if id(t) not in tick_labels]
    for ax in fig.axes:
        if ax.get_visible() and ax.axison:
            texts += _drawn_tick_labels(ax)
        for table in ax.tables:
            texts += [cell.get_text() for cell in table.get_celld().values() if cell.get_visible()]
    seen, out = set(), []
    for t in texts:
        if id(t) in seen or not t.get_visible() or not t.get_text().strip() or t.get_alpha() == 0:
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        seen.add(id(t))
        out.append(t)
    return out


def _label(t: Text) -> str:
    text = " ".join(t.get_text().split())
    return repr(text[:40] + ("…" if len(text) > 40 else ""))


def _clipped_to_axes(t: Text) -> bool:
    """A text clipped to its axes (set_clip_on with the axes patch) is cut by the axes, not the figure."""
    return bool(t.get_clip_on() and (t.get_clip_box() is not None or t.get_clip_path() is not None))


def _caption_problems(fig, caption: str, strings: str) -> list[str]:
    """Caption words that promise a visible element: the element must exist."""
    problems = []
    low = caption.lower()
    has_interval = any(
        isinstance(c, (LineCollection, PolyCollection)) for ax in fig.axes for c in ax.collections
    ) or any(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers)
    # An interval is drawn (errorbar, filled band) or printed as numbers ("0.91 [0.88, 0.94]").
    has_interval = has_interval or bool(re.search(r"\[\s*[-−]?[\d.]+%?\s*[,–]\s*[-−]?[\d.]+%?\s*\]", strings))
    if re.search(r"\binterval|\bband\b|\bbands\b|± ?std|\biqr\b", low) and not has_interval:
        problems.append("caption promises an interval/band but no errorbar, filled band or [low, high] is drawn")
    if "dashed" in low and not any(isinstance(ln, Line2D) and ln.get_linestyle() in ("--", "dashed")
                                   for ax in fig.axes for ln in ax.lines):
        problems.append("caption promises a dashed line but none is drawn")
    for word, pattern in (("youden", r"youden"), ("max-f1", r"max[- ]?f1|f1[- ]?max|best f1"),
                          ("y = x", r"y ?= ?x"), ("spearman", r"spearman|ρ"), ("kendall", r"kendall|τ"),
                          ("median", r"median"), ("ks", r"\bks\b|kolmogorov"), ("ece", r"\bece\b"),
                          ("n per cell", r"\bn ?=|\bn\b"), ("count per bin", r"\bn ?=|\bn\b|count")):
        if word in low and not re.search(pattern, strings):
            problems.append(f"caption promises '{word}' but no text or legend in the figure shows it")
    return problems


def lint_figure(fig, caption: str | None = None) -> list[str]:
    """Problems a reader would see in `fig` (drawn here): text beyond the figure, overlapping text,
    a size outside sane bounds, a caption naming an element the figure lacks."""
    problems: list[str] = []
    width, height = fig.get_size_inches() * fig.dpi
    if not (MIN_SIDE_PX <= width <= MAX_SIDE_PX and MIN_SIDE_PX <= height <= MAX_SIDE_PX):
        problems.append(f"size {width:.0f}×{height:.0f} px outside {MIN_SIDE_PX}–{MAX_SIDE_PX} px a side")
    if max(width, height) / max(min(width, height), 1) > MAX_ASPECT:
        problems.append(f"aspect {width:.0f}×{height:.0f} px beyond {MAX_ASPECT:g}:1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    missing = sorted({str(w.message).split(" missing")[0] for w in caught if "missing from font" in str(w.message)})
    if missing:  # drawn as boxes: a name the reader cannot read
        problems.append(f"{len(missing)} glyph(s) drawn as boxes ({', '.join(missing[:3])}); no installed font has them")
    renderer = fig.canvas.get_renderer()
    texts = visible_texts(fig)
    boxes = np.array([t.get_window_extent(renderer).extents for t in texts]).reshape(-1, 4)
    fx0, fy0, fx1, fy1 = fig.bbox.extents
    outside = []
    for t, (x0, y0, x1, y1) in zip(texts, boxes, strict=True):
        if _clipped_to_axes(t) and t.axes is not None:
            continue
        over = max(fx0 - x0, fy0 - y0, x1 - fx1, y1 - fy1)
        if over > TOLERANCE_PX:
            outside.append(f"text {_label(t)} extends {over:.0f} px beyond the figure")
    problems += outside[:MAX_REPORTED] + ([f"... {len(outside) - MAX_REPORTED} more texts beyond the figure"]
                                          if len(outside) > MAX_REPORTED else [])
    if len(boxes) > 1:
        shrunk = boxes + np.array([TOLERANCE_PX, TOLERANCE_PX, -TOLERANCE_PX, -TOLERANCE_PX])
        ix = np.minimum(shrunk[:, None, 2], shrunk[None, :, 2]) - np.maximum(shrunk[:, None, 0], shrunk[None, :, 0])
        iy = np.minimum(shrunk[:, None, 3], shrunk[None, :, 3]) - np.maximum(shrunk[:, None, 1], shrunk[None, :, 1])
        hit = np.triu((ix > 0) & (iy > 0), k=1)
        pairs = np.argwhere(hit)
        overlaps = [f"texts {_label(texts[i])} and {_label(texts[j])} overlap" for i, j in pairs]
        problems += overlaps[:MAX_REPORTED] + ([f"... {len(overlaps) - MAX_REPORTED} more overlapping text pairs"]
                                               if len(overlaps) > MAX_REPORTED else [])
    if caption:
        strings = " ".join(t.get_text() for t in texts).lower()
        problems += _caption_problems(fig, caption, strings)
    return problems
