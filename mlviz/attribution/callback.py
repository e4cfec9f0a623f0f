"""Heatmaps during training, as data: the maps of a fixed set of images arranged as one samples × outputs
grid. `mlviz.sections.heatmaps.HeatmapCallback` computes one every N epochs and publishes it (the demo logs
it to the MLflow UI's image grid with the epoch as step)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TrainingGrid:
    """What `mlviz.render.overlay.plot_training_grid` draws: [sample][output] display images in [0, 1] and
    maps (a video's frame with the most attribution), whether each map is empty, and the titles."""

    title: str
    images: list[list[np.ndarray]]
    cams: list[list[np.ndarray]]
    empty: list[list[bool]]
    row_titles: list[str]
    col_titles: list[str]
    cmap: str = "mlviz_heat"
    opacity: float = 0.6


def training_grid(model, images, epoch: int, method: str, *, sample_ids: list[str], labels=None,
                  denormalize=None, cmap: str = "mlviz_heat", opacity: float = 0.6, **cam_kw) -> TrainingGrid:
    """The maps of `images` (a (N, C, H, W) or video tensor on the CPU) under `model` at this epoch. It leaves the
    model as it found it (see `compute_cams`: mode restored, no hooks, .grad untouched)."""
    from mlviz.attribution.cam import compute_cams
    from mlviz.attribution.prepare import model_device
    from mlviz.render.overlay import image_for_display

    r = compute_cams(model, images.to(model_device(model)), method, labels=labels, **cam_kw)
    xs = images.cpu().numpy()
    imgs, cams, empty = [], [], []
    for i in range(len(xs)):
        row_i, row_c = [], []
        for j in range(len(r.heads)):
            cam, img = r.maps[i, j], xs[i]
            if r.is_video:
                t = int(np.argmax(cam.reshape(cam.shape[0], -1).sum(1)))
                cam, img = cam[t], img[:, t]
            row_i.append(image_for_display(img, denormalize))
            row_c.append(cam)
        imgs.append(row_i)
        cams.append(row_c)
        empty.append([bool(e) for e in r.empty[i]])
    lab = None if labels is None else np.asarray(labels).reshape(len(xs), -1)
    rows = [f"#{sample_ids[i]}: " + ("" if lab is None else "true " + ",".join(str(int(v)) for v in lab[i]) + " / ")
            + "pred " + ",".join(str(int(p)) for p in r.predicted[i]) for i in range(len(xs))]
    return TrainingGrid(f"{r.label} · epoch {epoch}", imgs, cams, empty, rows, list(r.head_names), cmap, opacity)
