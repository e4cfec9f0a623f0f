"""Drawing only (matplotlib): attribution maps over their images, always with a colour bar that says
what the colours mean, in a configurable colour map and opacity.

`mlviz_heat` is the purple → blue → green → yellow → red map research groups use for per-zone Grad-CAM
(registered with matplotlib under that name). A map with no positive evidence at all is written as
such, never drawn as a (flat purple) heatmap.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize

from mlviz.render import style

HEAT_COLORS = ["#3f007d", "#2956c8", "#1a9e50", "#f5e50a", "#d7191c"]  # purple, blue, green, yellow, red
MLVIZ_HEAT = LinearSegmentedColormap.from_list("mlviz_heat", HEAT_COLORS, N=256)
if "mlviz_heat" not in matplotlib.colormaps:
    matplotlib.colormaps.register(MLVIZ_HEAT)
SCALE_LABEL = "attribution, scaled per map\n(0 = its lowest, 1 = its highest)"
EMPTY_TEXT = "no positive evidence:\nthe map is zero everywhere"


def get_cmap(cmap):
    if isinstance(cmap, str):
        return matplotlib.colormaps[cmap]
    return cmap


def image_for_display(image: np.ndarray, denormalize=None) -> np.ndarray:
    """(C, H, W) model input → (H, W) grey or (H, W, 3) RGB in [0, 1].

    `denormalize`: None (each image min-max scaled), a (mean, std) pair per channel, or a callable.
    """
    img = np.asarray(image, dtype=np.float32)
    if callable(denormalize):
        img = np.asarray(denormalize(img), dtype=np.float32)
    elif denormalize is not None:
        mean, std = (np.asarray(v, dtype=np.float32).reshape(-1, 1, 1) for v in denormalize)
        img = img * std + mean
    if img.ndim == 3:
        c = img.shape[0]
        img = img[0] if c == 1 else np.moveaxis(img[:3], 0, -1) if c >= 3 else img.mean(axis=0)
    if denormalize is None:
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return np.clip(img, 0.0, 1.0)


def _interp(shape) -> str:
    return "nearest" if max(shape[:2]) <= 64 else "antialiased"


def draw_overlay(ax, image: np.ndarray, cam: np.ndarray | None, *, cmap="mlviz_heat", opacity: float = 0.6,
                 title: str | None = None, empty: bool = False):
    """Image with the map over it (alpha = opacity × (0.3 + 0.7 × map)); an empty map is stated, not drawn.
    Returns the map's image artist."""
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation=_interp(image.shape))
    artist = None
    if cam is not None and not empty:
        # opacity grows with the attribution, so the image stays readable where the map is low
        alpha = np.clip(opacity * (0.3 + 0.7 * np.asarray(cam, dtype=np.float32)), 0.0, 1.0)
        artist = ax.imshow(cam, cmap=get_cmap(cmap), vmin=0, vmax=1, alpha=alpha, interpolation=_interp(cam.shape))
    elif empty:
        ax.text(0.5, 0.5, EMPTY_TEXT, transform=ax.transAxes, ha="center", va="center", fontsize=7,
                color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "edgecolor": "none"})
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8)
    return artist


def add_colorbar(fig, axes, cmap="mlviz_heat", label: str = SCALE_LABEL):
    """The scale at full opacity (the overlay's colours are these, blended with the image)."""
    sm = ScalarMappable(norm=Normalize(0, 1), cmap=get_cmap(cmap))
    cb = fig.colorbar(sm, ax=axes, fraction=0.046, pad=0.04, shrink=0.9)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=7)
    return cb


def plot_heatmap(image: np.ndarray, cam: np.ndarray, *, title: str, lines: list[str] = (), cmap="mlviz_heat",
                 opacity: float = 0.6, empty: bool = False):
    """Input | overlay | map alone, with the colour bar. `image` as from image_for_display, `cam` (H, W)."""
    fig, axes = style.subplots(1, 3, 8.4, 3.3)
    axes = axes[0]
    draw_overlay(axes[0], image, None, title="input")
    draw_overlay(axes[1], image, cam, cmap=cmap, opacity=opacity, empty=empty, title=f"overlay (opacity up to {opacity:g})")
    ax = axes[2]
    if empty:
        draw_overlay(ax, np.zeros_like(image), None, empty=True, title="map")
    else:
        ax.imshow(cam, cmap=get_cmap(cmap), vmin=0, vmax=1, interpolation=_interp(cam.shape))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("map", fontsize=8)
    add_colorbar(fig, list(axes), cmap)
    fig.suptitle(title + ("\n" + " · ".join(lines) if lines else ""), fontsize=9)
    return fig


def _frame_indices(t: int, max_frames: int) -> list[int]:
    if t <= max_frames:
        return list(range(t))
    return sorted({int(round(v)) for v in np.linspace(0, t - 1, max_frames)})


def plot_video_strip(frames: list[np.ndarray], cams: np.ndarray, *, title: str, lines: list[str] = (),
                     cmap="mlviz_heat", opacity: float = 0.6, empty: bool = False, max_frames: int = 16):
    """Per-frame strip: the frames on top, their overlays below, one shared colour bar."""
    idx = _frame_indices(len(frames), max_frames)
    fig, axes = style.subplots(2, len(idx), 1.5 * len(idx) + 1.4, 3.6)
    for col, t in enumerate(idx):
        draw_overlay(axes[0, col], frames[t], None, title=f"frame {t}")
        peak = float(cams[t].max())
        draw_overlay(axes[1, col], frames[t], cams[t], cmap=cmap, opacity=opacity, empty=empty,
                     title=None if empty else f"peak {peak:.2f}")
    add_colorbar(fig, list(axes.ravel()), cmap, label="attribution, scaled per clip\n(0 = lowest, 1 = highest)")
    fig.suptitle(title + ("\n" + " · ".join(lines) if lines else ""), fontsize=9)
    return fig


@dataclass
class Tile:
    image: np.ndarray  # display image
    cam: np.ndarray
    title: str
    empty: bool = False


def plot_gallery(tiles: list[Tile], *, title: str, cmap="mlviz_heat", opacity: float = 0.6, max_cols: int = 4):
    rows, cols = style.grid_shape(len(tiles), max_cols)
    fig, axes = style.subplots(rows, cols, 2.3 * cols + 1.0, 2.5 * rows + 0.6)
    for k, ax in enumerate(axes.ravel()):
        if k < len(tiles):
            t = tiles[k]
            draw_overlay(ax, t.image, t.cam, cmap=cmap, opacity=opacity, empty=t.empty, title=t.title)
        else:
            ax.axis("off")
    add_colorbar(fig, list(axes.ravel()), cmap)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_grid(images: list[list[np.ndarray]], cams: list[list[np.ndarray]], *, row_titles: list[str],
              col_titles: list[str], title: str, cmap="mlviz_heat", opacity: float = 0.6, empty=None):
    """Samples × outputs grid of overlays (the image logged per epoch by HeatmapCallback); a model with
    one output gets one row of samples. A fixed layout rather than the constrained one: this figure is
    drawn every few epochs inside training, where the layout solver was half its cost."""
    import matplotlib.pyplot as plt

    one_row = len(images[0]) == 1
    n_samples, n_out = len(images), len(images[0])
    rows, cols = (1, n_samples) if one_row else (n_samples, n_out)
    top, bottom, left, right_bar = 0.55, 0.15, 0.3 if one_row else 0.9, 1.1
    fig = plt.figure(figsize=(1.9 * cols + left + right_bar, 2.1 * rows + top + bottom + (0.4 if one_row else 0)))
    w, h = fig.get_size_inches()
    grid = fig.add_gridspec(rows, cols, left=left / w, right=1 - right_bar / w, top=1 - top / h,
                            bottom=bottom / h + (0.4 / h if one_row else 0), wspace=0.08, hspace=0.2)
    axes = []
    for i in range(n_samples):
        for j in range(n_out):
            r, c = (0, i) if one_row else (i, j)
            ax = fig.add_subplot(grid[r, c])
            e = bool(empty[i][j]) if empty is not None else False
            draw_overlay(ax, images[i][j], cams[i][j], cmap=cmap, opacity=opacity, empty=e,
                         title=(col_titles[j] if i == 0 else None) if not one_row else None)
            if one_row:
                ax.set_xlabel(row_titles[i], fontsize=7)
            elif j == 0:
                ax.set_ylabel(row_titles[i], fontsize=7)
            axes.append(ax)
    bar = fig.add_axes([1 - (right_bar - 0.15) / w, bottom / h + 0.05, 0.12 / w, 1 - (top + bottom) / h - 0.1])
    cb = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=get_cmap(cmap)), cax=bar)
    cb.set_label(SCALE_LABEL, fontsize=6)
    cb.ax.tick_params(labelsize=6)
    fig.suptitle(title + (f" · {col_titles[0]}" if one_row and col_titles else ""), fontsize=9)
    return fig


def plot_training_grid(g):
    """The grid of a `mlviz.attribution.callback.TrainingGrid` (one epoch of training-time heatmaps)."""
    return plot_grid(g.images, g.cams, row_titles=g.row_titles, col_titles=g.col_titles, title=g.title,
                     cmap=g.cmap, opacity=g.opacity, empty=g.empty)
