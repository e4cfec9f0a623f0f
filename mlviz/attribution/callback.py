"""Heatmaps during training: maps for a fixed set of images every N epochs, drawn as one grid and handed
to a log function (the demo logs them to the MLflow UI's image grid with the epoch as step)."""

from __future__ import annotations

import warnings

import numpy as np

from mlviz.attribution.result import canonical_method
from mlviz.errors import MlvizError


class HeatmapCallback:
    """Maps for a fixed set of images every `every_n_epochs` epochs, drawn as one samples × outputs grid
    and handed to `log_fn(epoch, rgb_uint8_image)` (e.g. mlviz.store.write.Writer.log_image_steps with the epoch as step).

    Call it at the end of each epoch (`callback(epoch)` or `callback.on_epoch_end(epoch)`); it acts when
    `epoch % every_n_epochs == 0`. It leaves the model as it found it: train/eval mode restored, no hooks,
    parameters' .grad untouched (gradients are taken with torch.autograd.grad, not backward()). A failure
    is a warning (training goes on) unless on_error="raise".
    """

    def __init__(self, model, images, every_n_epochs: int = 1, log_fn=None, *, method: str = "gradcam",
                 target_layer=None, targets="predicted", labels=None, heads=None, head_names=None,
                 sample_ids=None, opacity: float = 0.6, cmap: str = "mlviz_heat", denormalize=None,
                 max_images: int = 8, on_error: str = "warn"):
        from mlviz.attribution.prepare import as_images

        self.model = model
        self.images = as_images(images)[:max_images]
        self.every = int(every_n_epochs)
        self.log_fn = log_fn
        self.method = canonical_method(method)
        self.kw = {"target_layer": target_layer, "targets": targets, "heads": heads, "head_names": head_names,
                   "labels": None if labels is None else np.asarray(labels)[:max_images]}
        self.ids = [str(s) for s in (sample_ids if sample_ids is not None else range(len(self.images)))][:max_images]
        self.opacity, self.cmap, self.denormalize, self.on_error = opacity, cmap, denormalize, on_error
        self.logged: list[int] = []
        self.errors: list[str] = []

    def render(self, epoch: int) -> np.ndarray:
        from mlviz.attribution.cam import compute_cams
        from mlviz.attribution.prepare import model_device
        from mlviz.render import overlay

        x = self.images.to(model_device(self.model))
        r = compute_cams(self.model, x, self.method, **self.kw)
        xs = self.images.cpu().numpy()
        imgs, cams, empty = [], [], []
        for i in range(len(xs)):
            row_i, row_c, row_e = [], [], []
            for j in range(len(r.heads)):
                cam, img = r.maps[i, j], xs[i]
                if r.is_video:
                    t = int(np.argmax(cam.reshape(cam.shape[0], -1).sum(1)))
                    cam, img = cam[t], img[:, t]
                row_i.append(overlay.image_for_display(img, self.denormalize))
                row_c.append(cam)
                row_e.append(bool(r.empty[i, j]))
            imgs.append(row_i)
            cams.append(row_c)
            empty.append(row_e)
        labels = self.kw["labels"]
        lab = None if labels is None else np.asarray(labels).reshape(len(xs), -1)
        rows = [f"#{self.ids[i]}: " + ("" if lab is None else "true " + ",".join(str(int(v)) for v in lab[i]) + " / ")
                + "pred " + ",".join(str(int(p)) for p in r.predicted[i]) for i in range(len(xs))]
        fig = overlay.plot_grid(imgs, cams, row_titles=rows, col_titles=r.head_names,
                                title=f"{r.label} · epoch {epoch}", cmap=self.cmap, opacity=self.opacity,
                                empty=empty)
        return overlay.figure_to_rgb(fig)

    def __call__(self, epoch: int) -> np.ndarray | None:
        if self.every <= 0 or epoch % self.every != 0:
            return None
        try:
            rgb = self.render(epoch)
        except MlvizError as exc:
            if self.on_error == "raise":
                raise
            self.errors.append(f"epoch {epoch}: {exc}")
            warnings.warn(f"heatmaps at epoch {epoch} skipped: {exc}", stacklevel=2)
            return None
        self.logged.append(epoch)
        if self.log_fn is not None:
            self.log_fn(epoch, rgb)
        return rgb

    on_epoch_end = __call__
