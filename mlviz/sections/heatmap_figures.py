"""The heatmaps/ section: per output and sample overlays, correct / error galleries, faithfulness scores.

File names follow the figure catalogue (`heatmap_<output>_<sample>.png`, `gradcam_correct_gallery.png`,
`gradcam_error_gallery.png`; the gallery names are kept whatever the method, and the figure and its JSON
say which method drew it). Every figure's JSON holds its numbers (the map, downsampled to at most 64×64,
the classes and probabilities) and the faithfulness score of each method.

Entry points:
- `heatmap_report(model, images, labels, sample_ids, predictions=None, method=...)` → (results, faithfulness,
  skipped), `results[("heatmaps", stem)] = (data, make_figure)`, `make_figure()` returning the Figure and
  `mlviz.analysis.stats.to_jsonable(data)` the JSON beside it;
- `heatmap_figures(model, images, ...)`: the same as a `mlviz.report.Report` for `mlviz.publish`;
- `run_heatmap_figures(run_dir, ...)`: the same from a run's downloaded artifact folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlviz.analysis.stats import to_jsonable
from mlviz.attribution.result import AttributionResult, canonical_method
from mlviz.errors import MlvizError
from mlviz.report import Figure, Report
from mlviz.text import safe_name

SECTION = "heatmaps"
MAX_JSON_MAP = 64
SCALE_NOTE = "each map is scaled to [0, 1] on its own: 0 = its lowest, 1 = its highest attribution"


def _json_map(m: np.ndarray) -> tuple[list, list[int]]:
    """The map for the JSON, block-averaged so that no side exceeds MAX_JSON_MAP."""
    h, w = m.shape[-2:]
    f = max(1, -(-max(h, w) // MAX_JSON_MAP))
    if f > 1:
        hh, ww = h // f * f, w // f * f
        m = m[..., :hh, :ww].reshape(*m.shape[:-2], hh // f, f, ww // f, f).mean(axis=(-3, -1))
    return np.round(m.astype(np.float64), 4).tolist(), list(m.shape)


@dataclass
class HeatmapData:
    """Numbers behind heatmap_<output>_<sample>.png."""

    figure: str
    caption: str
    method: str
    method_label: str
    is_cam: bool
    class_specific: bool
    output: str
    sample_id: str
    image_index: int
    true_class: str | None
    predicted_class: str
    target_class: str
    target_mode: str
    probability: float
    target_probability: float
    correct: bool | None
    empty_map: bool
    layer: dict | None
    map_shape: list[int]
    map_json_shape: list[int]
    map: list
    scale: str
    colormap: str
    opacity: float
    faithfulness: dict
    notes: list[str] = field(default_factory=list)
    method_params: dict = field(default_factory=dict)


@dataclass
class GalleryData:
    """Numbers behind gradcam_correct_gallery.png / gradcam_error_gallery.png."""

    figure: str
    caption: str
    kind: str  # "correct" | "error"
    method: str
    method_label: str
    is_cam: bool
    layer: dict | None
    outcome_source: str
    n_candidates: int
    order: str
    tiles: list[dict]
    colormap: str
    opacity: float
    faithfulness: dict
    notes: list[str] = field(default_factory=list)


def _matrix(values, n: int, n_heads_all: int, heads: list[int], what: str) -> np.ndarray | None:
    if values is None:
        return None
    a = np.asarray(values)
    if a.ndim == 1:
        a = a[:, None]
    if a.shape[0] != n:
        raise MlvizError(f"{what} has {a.shape[0]} rows for {n} images")
    if a.shape[1] == n_heads_all:
        return a[:, heads].astype(np.int64)
    if a.shape[1] == len(heads):
        return a.astype(np.int64)
    raise MlvizError(f"{what} of shape {a.shape} does not match {n_heads_all} output(s)")


def _predictions_matrix(predictions, n: int, result: AttributionResult, all_names: list[str]) -> np.ndarray | None:
    import pandas as pd

    if predictions is None:
        return None
    if isinstance(predictions, pd.DataFrame):
        frame = predictions.reset_index(drop=True)
        if len(frame) != n:
            raise MlvizError(f"predictions have {len(frame)} rows for {n} images (pass the rows of these images)")
        if "pred" in frame.columns and len(all_names) == 1:
            return frame[["pred"]].to_numpy().astype(np.int64)
        cols = [f"pred_{h}" for h in result.head_names]
        if all(c in frame.columns for c in cols):
            return frame[cols].to_numpy().astype(np.int64)
        raise MlvizError(f"predictions have no column {', '.join(cols) if len(cols) > 1 else 'pred'}")
    return _matrix(predictions, n, len(all_names), result.heads, "predictions")


def _params_for(r: AttributionResult, i: int, j: int) -> dict:
    """The method's settings, with per-map arrays (occlusion's largest probability drop) cut to this map."""
    return {k: float(v[i, j]) if isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[:2] == r.maps.shape[:2]
            else v for k, v in r.params.items()}


def _class_name(c: int, class_names) -> str:
    if class_names is not None and 0 <= int(c) < len(class_names):
        return str(class_names[int(c)])
    return str(int(c))


def _faithfulness_all(model, images, result, methods, *, target_layer, targets, labels, heads, head_names,
                      batch_size, samples, seed) -> dict:
    from mlviz.attribution.cam import compute_cams
    from mlviz.attribution.faithfulness import faithfulness

    out = {}
    for m in methods:
        m = canonical_method(m)
        try:
            res = result if m == result.method else compute_cams(
                model, images, m, target_layer=target_layer if m not in ("occlusion", "input_gradients",
                                                                         "attention_rollout") else None,
                targets=targets, labels=labels, heads=heads, head_names=head_names, batch_size=batch_size)
            out[m] = faithfulness(model, images, res, max_samples=samples, seed=seed)
        except MlvizError as exc:
            out[m] = {"method": m, "error": str(exc)}
    return out


def _report(model, images, labels=None, sample_ids=None, predictions=None, method="gradcam", *, target_layer=None,
            targets="predicted", heads=None, head_names=None, class_names=None, faithfulness_methods=None,
            faithfulness_samples: int = 16, opacity: float = 0.6, cmap: str = "mlviz_heat", gallery_size: int = 8,
            max_figures: int = 64, denormalize=None, batch_size: int = 16, seed: int = 0, result=None):
    from mlviz.attribution.cam import compute_cams
    from mlviz.attribution.prepare import as_images
    from mlviz.render import overlay

    x = as_images(images).cpu().numpy()
    n = len(x)
    r = result if result is not None else compute_cams(
        model, x, method, target_layer=target_layer, targets=targets, labels=labels, heads=heads,
        head_names=head_names, batch_size=batch_size)
    names_all = list(r.output_names)
    n_heads_all = len(names_all)
    ids = np.asarray(sample_ids) if sample_ids is not None else np.arange(n)
    if len(ids) != n:
        raise MlvizError(f"{len(ids)} sample ids for {n} images")
    lab = _matrix(labels, n, n_heads_all, r.heads, "labels")
    given = _predictions_matrix(predictions, n, r, names_all)
    notes = list(r.notes)
    pred, outcome_source = r.predicted, "the model's predictions"
    if given is not None:
        disagree = int((given != r.predicted).any(axis=1).sum())
        pred, outcome_source = given, "the logged predictions"
        if disagree:
            notes.append(f"the logged predictions differ from the model's for {disagree} of {n} images "
                         "(different weights or preprocessing?)")
    correct = (pred == lab) if lab is not None else None
    faith = {}
    if faithfulness_methods is not False:
        faith = _faithfulness_all(model, x, r, faithfulness_methods or [r.method], target_layer=target_layer,
                                  targets=targets, labels=labels, heads=heads, head_names=head_names,
                                  batch_size=batch_size, samples=faithfulness_samples, seed=seed)
    layer_name = r.layer["name"] if r.layer else None
    where = f" on layer {layer_name}" if layer_name else ""
    results, skipped = {}, []
    used: set[str] = set()
    display = {}

    def disp(i):
        if i not in display:
            img = x[i]
            display[i] = ([overlay.image_for_display(img[:, t], denormalize) for t in range(img.shape[1])]
                          if img.ndim == 4 else overlay.image_for_display(img, denormalize))
        return display[i]

    pairs = [(i, j) for i in range(n) for j in range(len(r.heads))]
    if len(pairs) > max_figures:
        skipped.append({"section": SECTION, "figure": "heatmap_<output>_<sample>",
                        "reason": f"limited to max_figures={max_figures} of {len(pairs)} maps"})
        pairs = pairs[:max_figures]
    for i, j in pairs:
        out_name = r.head_names[j]
        stem = f"heatmap_{safe_name(out_name)}_{safe_name(ids[i])}"
        if stem in used:
            stem = f"{stem}_{i}"
        used.add(stem)
        cam = r.maps[i, j]
        jm, jshape = _json_map(cam)
        true = _class_name(lab[i, j], class_names) if lab is not None else None
        p_name = _class_name(pred[i, j], class_names)
        t_name = _class_name(r.target_classes[i, j], class_names)
        data = HeatmapData(
            figure=stem, caption=f"{r.label}{where}: evidence for class {t_name} ({r.target_mode}) of output "
                                 f"{out_name}, sample {ids[i]}.",
            method=r.method, method_label=r.label, is_cam=r.is_cam, class_specific=r.class_specific,
            output=out_name, sample_id=str(ids[i]), image_index=i, true_class=true, predicted_class=p_name,
            target_class=t_name, target_mode=r.target_mode, probability=float(r.probability[i, j]),
            target_probability=float(r.target_probability[i, j]),
            correct=None if correct is None else bool(correct[i, j]), empty_map=bool(r.empty[i, j]),
            layer=r.layer, map_shape=list(cam.shape), map_json_shape=jshape, map=jm, scale=SCALE_NOTE,
            colormap=str(cmap), opacity=opacity, faithfulness=faith, notes=notes,
            method_params=_params_for(r, i, j))
        lines = [f"true {true} · predicted {p_name} (p={r.probability[i, j]:.2f})" if true is not None
                 else f"predicted {p_name} (p={r.probability[i, j]:.2f})",
                 f"map for class {t_name} ({r.target_mode})" + (f" · layer {layer_name}" if layer_name else "")]
        title = f"{r.label} · {out_name} · sample {ids[i]}"

        def make(_=None, i=i, j=j, title=title, lines=lines):
            plot = overlay.plot_video_strip if r.is_video else overlay.plot_heatmap
            return plot(disp(i), r.maps[i, j], title=title, lines=lines, cmap=cmap, opacity=opacity,
                        empty=bool(r.empty[i, j]))
        results[(SECTION, stem)] = (data, make)

    for kind in ("correct", "error"):
        stem = f"gradcam_{kind}_gallery"
        if correct is None:
            skipped.append({"section": SECTION, "figure": stem,
                            "reason": "no labels: correct and misclassified images cannot be told apart"})
            continue
        mask = correct if kind == "correct" else ~correct
        cand = np.argwhere(mask)
        if len(cand) == 0:
            skipped.append({"section": SECTION, "figure": stem,
                            "reason": f"no {'correctly classified' if kind == 'correct' else 'misclassified'} "
                                      f"output among the {n} images"})
            continue
        if kind == "error":  # most confident mistakes first
            order = "most confident mistakes first"
            cand = cand[np.argsort(-r.probability[cand[:, 0], cand[:, 1]], kind="stable")]
        else:
            order = "random (seeded)"
            cand = cand[np.random.default_rng(seed).permutation(len(cand))]
        chosen = cand[:gallery_size]
        tiles = []
        for i, j in chosen:
            frame = int(np.argmax(r.maps[i, j].reshape(r.maps.shape[2], -1).sum(1))) if r.is_video else None
            tiles.append({"sample_id": str(ids[i]), "image_index": int(i), "output": r.head_names[j],
                          "true_class": _class_name(lab[i, j], class_names),
                          "predicted_class": _class_name(pred[i, j], class_names),
                          "target_class": _class_name(r.target_classes[i, j], class_names),
                          "probability": float(r.probability[i, j]), "empty_map": bool(r.empty[i, j]),
                          "frame": frame})
        caption = (f"{r.label}{where} on {'correctly classified' if kind == 'correct' else 'misclassified'} "
                   f"images ({len(chosen)} of {len(cand)}; {order}); maps for the {r.target_mode} class.")
        data = GalleryData(figure=stem, caption=caption, kind=kind, method=r.method, method_label=r.label,
                           is_cam=r.is_cam, layer=r.layer, outcome_source=outcome_source, n_candidates=int(len(cand)),
                           order=order, tiles=tiles, colormap=str(cmap), opacity=opacity, faithfulness=faith,
                           notes=notes)
        multi = len(r.head_names) > 1

        def make_gallery(_=None, chosen=chosen, tiles=tiles, kind=kind, total=len(cand), multi=multi):
            ts = []
            for (i, j), t in zip(chosen, tiles, strict=True):
                img = disp(i)
                cam = r.maps[i, j]
                if t["frame"] is not None:
                    img, cam = img[t["frame"]], cam[t["frame"]]
                head = f" · {t['output']}" if multi else ""
                fr = f" · frame {t['frame']}" if t["frame"] is not None else ""
                title = (f"#{t['sample_id']}{head}{fr}\ntrue {t['true_class']} / pred {t['predicted_class']} "
                         f"({t['probability']:.2f})")
                ts.append(overlay.Tile(img, cam, title, t["empty_map"]))
            word = "correct" if kind == "correct" else "misclassified"
            return overlay.plot_gallery(ts, title=f"{r.label}: {word} ({len(ts)} of {total})",
                                        cmap=cmap, opacity=opacity)
        results[(SECTION, stem)] = (data, make_gallery)
    return results, faith, skipped, r


def heatmap_report(model, images, labels=None, sample_ids=None, predictions=None, method: str = "gradcam", **kw):
    """(results, faithfulness, skipped) for the heatmaps/ section.

    results: {("heatmaps", stem): (data, make_figure)}; `to_jsonable(data)` is the JSON beside the PNG and
        `make_figure()` returns the matplotlib Figure (the caller saves and closes it).
    faithfulness: {method: scores} (see mlviz.attribution.faithfulness), also inside every JSON.
    skipped: [{"section", "figure", "reason"}], e.g. the error gallery when nothing is misclassified.

    labels: (N,) or (N, outputs); predictions: None (the model's own), the predictions rows of these images
    (a DataFrame with `pred` / `pred_<output>`), or an (N,) / (N, outputs) array. Keywords: target_layer,
    targets ("predicted" | "true" | class), heads, head_names, class_names, faithfulness_methods (list, or
    False for none; default [method]), faithfulness_samples, opacity, cmap, gallery_size, max_figures,
    denormalize ((mean, std) or a callable for display), batch_size, seed, result (a precomputed
    AttributionResult).
    """
    results, faith, skipped, _ = _report(model, images, labels, sample_ids, predictions, method, **kw)
    return results, faith, skipped


def heatmap_figures(model, images, labels=None, sample_ids=None, predictions=None, method: str = "gradcam",
                    *, threads: int | None = None, **kw) -> Report:
    """The heatmaps/ section as figures-as-data (keywords as heatmap_report; `threads`: torch intra-op
    threads while computing, None to leave as is). `report.summary` holds the faithfulness per method and
    the attribution's description."""
    from mlviz.attribution.hooks import torch_threads

    with torch_threads(threads):
        results, faith, skipped, r = _report(model, images, labels, sample_ids, predictions, method, **kw)
    figures = [Figure(SECTION, stem, data.caption, data, make,
                      grid_key="mlviz_gradcam_error_gallery" if stem == "gradcam_error_gallery" else None)
               for (_, stem), (data, make) in results.items()]
    return Report("heatmaps", figures, skipped, summary={"faithfulness": to_jsonable(faith),
                                                         "attribution": r.summary()})


def run_heatmap_figures(run_dir, *, method: str = "gradcam", n: int = 8, select: str = "balanced",
                        seed: int = 0, images=None, device: str = "cpu", threads: int | None = None,
                        factory: str | None = None, config: dict | None = None, **kw) -> Report:
    """Load a run's model and `n` of its images (see mlviz.attribution.load.load_run) from its downloaded
    artifact folder, and make the heatmaps/ section."""
    from mlviz.attribution.hooks import torch_threads
    from mlviz.attribution.load import load_run

    with torch_threads(threads):
        loaded, samples = load_run(run_dir, n=n, select=select, seed=seed, device=device, images=images,
                                   factory=factory, config=config)
    kw.setdefault("head_names", samples.head_names)
    kw.setdefault("class_names", samples.class_names)
    report = heatmap_figures(loaded.model, samples.images, samples.labels, samples.sample_ids,
                             samples.predicted, method, seed=seed, threads=threads, **kw)
    report.summary["model"] = {"source": loaded.source, "path": loaded.path, "factory": loaded.factory,
                               "notes": loaded.notes}
    report.summary["samples"] = {"source": samples.source, "selection": samples.selection, "n": len(samples),
                                 "sample_ids": [str(s) for s in samples.sample_ids], "notes": samples.notes}
    return report
