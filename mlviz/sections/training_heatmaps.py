"""Heatmaps during training: `HeatmapCallback` makes the maps of a fixed set of images every N epochs and
publishes each grid as a figure, by step (the demo logs them to the MLflow UI's image grid with the epoch as
step; `mlviz heatmaps` makes the full heatmaps/ section of a finished run)."""

from __future__ import annotations

import warnings

import numpy as np

from mlviz.errors import MlvizError
from mlviz.publish import IntoRun, publish_step
from mlviz.report import Figure

SECTION = "heatmaps"


class HeatmapCallback:
    """Maps for a fixed set of images every `every_n_epochs` epochs, drawn as one samples × outputs grid and
    published by step: `to=IntoRun(store, run_id)` logs it to that run's image grid under `key` (the same key
    in every run, so the MLflow UI lines runs up), or a function `log_fn(epoch, rgb_uint8_image)` gets it.

    Call it at the end of each epoch (`callback(epoch)` or `callback.on_epoch_end(epoch)`); it acts when
    `epoch % every_n_epochs == 0`. It leaves the model as it found it: train/eval mode restored, no hooks,
    parameters' .grad untouched (gradients are taken with torch.autograd.grad, not backward()). A failure
    is a warning (training goes on) unless on_error="raise".
    """

    def __init__(self, model, images, every_n_epochs: int = 1, log_fn=None, *, to: IntoRun | None = None,
                 key: str = "mlviz_heatmaps", method: str = "gradcam", target_layer=None, targets="predicted",
                 labels=None, heads=None, head_names=None, sample_ids=None, opacity: float = 0.6,
                 cmap: str = "mlviz_heat", denormalize=None, max_images: int = 8, on_error: str = "warn"):
        from mlviz.attribution.prepare import as_images
        from mlviz.attribution.result import canonical_method

        self.model = model
        self.images = as_images(images)[:max_images]
        self.every = int(every_n_epochs)
        self.to = to if to is not None else log_fn
        self.key = key
        self.method = canonical_method(method)
        self.kw = {"target_layer": target_layer, "targets": targets, "heads": heads, "head_names": head_names,
                   "labels": None if labels is None else np.asarray(labels)[:max_images],
                   "sample_ids": [str(s) for s in (sample_ids if sample_ids is not None
                                                   else range(len(self.images)))][:max_images],
                   "opacity": opacity, "cmap": cmap, "denormalize": denormalize}
        self.on_error = on_error
        self.logged: list[int] = []
        self.errors: list[str] = []

    def figure(self, epoch: int) -> Figure:
        """This epoch's grid as figures-as-data (`mlviz/heatmaps/training_epoch_<epoch>.png` where it is drawn)."""
        from mlviz.attribution.callback import training_grid
        from mlviz.render.overlay import plot_training_grid

        grid = training_grid(self.model, self.images, epoch, self.method, **self.kw)
        return Figure(SECTION, f"training_epoch_{epoch:04d}", f"{grid.title}: the same {len(grid.images)} images "
                      "every few epochs", grid, draw=plot_training_grid, grid_key=self.key)

    def __call__(self, epoch: int):
        """The grid drawn as an (H, W, 3) uint8 array at the epochs it acts on, else None."""
        if self.every <= 0 or epoch % self.every != 0:
            return None
        try:
            figure = self.figure(epoch)
        except MlvizError as exc:
            if self.on_error == "raise":
                raise
            self.errors.append(f"epoch {epoch}: {exc}")
            warnings.warn(f"heatmaps at epoch {epoch} skipped: {exc}", stacklevel=2)
            return None
        rgb = publish_step(figure, epoch, self.to)
        self.logged.append(epoch)
        return rgb

    on_epoch_end = __call__
