"""One run's attribution heatmaps: the run's model and images → CAMs → figures → logged into that run.

`run_heatmaps` is what `mlviz heatmaps` calls; `mlviz.sections.model.best_model` adds `heatmaps_report` to
its own report so that the best model's diagnostics and heatmaps share one run and one index.html. Only the artifacts the
attribution needs are downloaded: the model (a state dict + `model_config.json`, or an MLflow PyTorch
model folder), `data/val_images.npz` and the predictions with their `contract.json` (to pick correct and
misclassified samples). Torch is imported only here, when heatmaps are asked for.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlviz.attribution.artifacts import IMAGES, STATE_FILES, model_artifacts
from mlviz.errors import MlvizError
from mlviz.publish import IntoRun, ToFolder, publish
from mlviz.report import Report
from mlviz.store.write import Writer

SECTION = "heatmaps"
PREDICTIONS = ("predictions/val_predictions.csv", "predictions/contract.json")
DEFAULTS = {"method": "gradcam", "n": 8, "select": "balanced", "seed": 0, "target_layer": None,
            "targets": "predicted", "faithfulness_methods": None, "opacity": 0.6, "cmap": "mlviz_heat",
            "factory": None, "config": None, "images": None, "threads": None}


def attribution_available() -> str | None:
    """None when torch and grad-cam import, else why not (one line)."""
    import importlib.util

    missing = [m for m in ("torch", "torchvision", "pytorch_grad_cam") if importlib.util.find_spec(m) is None]
    return (f"{', '.join(missing)} not installed (pip install 'mlviz[attribution]')" if missing else None)


def fetch_inputs(store, run_id: str, paths: list[str], dest: Path, options: dict | None = None) -> Path:
    """Download what the attribution needs (model, images, predictions) into `dest`; returns it.
    Raises MlvizError with the reason when the run has no model or no images."""
    o = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}
    needed = model_artifacts(paths, o["factory"])
    if needed is None:
        raise MlvizError(f"run {run_id} logged no model (looked for {STATE_FILES[0]} with model_config.json, "
                         "or an MLflow model folder with MLmodel)")
    if o["images"] is None and IMAGES not in paths:
        raise MlvizError(f"run {run_id} logged no images ({IMAGES}); pass --images FOLDER_OR_NPZ")
    wanted = needed + ([IMAGES] if o["images"] is None else []) + [p for p in PREDICTIONS if p in paths]
    for p in wanted:
        store.download(run_id, p, dest / Path(p).parent)
    return dest


def heatmaps_report(store, run_id: str, paths: list[str], options: dict | None = None,
                    src: Path | None = None) -> Report:
    """The heatmaps/ section of the run as figures-as-data (from `src`, what fetch_inputs downloaded, or
    downloaded here into a temporary folder). Raises MlvizError with the reason when the run has no model
    or the maps cannot be computed."""
    from mlviz.sections.heatmap_figures import run_heatmap_figures

    o = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}
    tmp = None
    if src is None:
        tmp = Path(tempfile.mkdtemp(prefix="mlviz-cam-"))
        src = fetch_inputs(store, run_id, paths, tmp / "src", o)
    try:
        kw = {k: o[k] for k in ("target_layer", "targets", "faithfulness_methods", "opacity", "cmap")}
        report = run_heatmap_figures(src, method=o["method"], n=int(o["n"]), select=o["select"],
                                     seed=int(o["seed"]), images=o["images"], threads=o["threads"],
                                     factory=o["factory"], config=o["config"], **kw)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    report.tags["mlviz.heatmaps"] = report.summary["attribution"]["method"]
    return report


def sample_maps(src: Path, images, heads: list[str], options: dict | None = None) -> tuple[object, str]:
    """One map per (image, head) pair: the CAM of the model in `src` for its predicted class of that
    head. `heads` names the head of each image ("" for a single-output model). Returns ((m, H, W) maps
    in [0, 1], the method's label), e.g. for heatmap overlays on best_model/case_gallery."""
    import numpy as np

    from mlviz.attribution.cam import compute_cams
    from mlviz.attribution.load import load_model

    o = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}
    loaded = load_model(src, factory=o["factory"], config=o["config"])
    names = None
    npz = src / IMAGES
    if npz.exists():
        with np.load(npz, allow_pickle=False) as data:
            names = [str(h) for h in data["head_names"]] if "head_names" in data.files else None
    r = compute_cams(loaded.model, np.asarray(images, dtype=np.float32), o["method"],
                     target_layer=o["target_layer"], head_names=names)
    index = {name: j for j, name in enumerate(r.head_names)}
    cols = [index.get(h, 0) for h in heads]
    return r.maps[np.arange(len(cols)), cols], r.label


def run_heatmaps(run_id: str, tracking_uri: str | None = None, out: str | Path | None = None,
                 options: dict | None = None, store=None, echo=print) -> dict:
    """`mlviz heatmaps`: the heatmaps/ section of one run, logged into that run (or written to `out`), with
    `mlviz/heatmaps_summary.json` and a page of its own, `mlviz/heatmaps_index.html` (the run's
    `index.html`, if best-model wrote one, is left as it is). Returns the summary."""
    from mlviz.store.read import Store

    why = attribution_available()
    if why:
        raise MlvizError(f"heatmaps need PyTorch and grad-cam: {why}")
    own = store is None
    store = store or Store(tracking_uri)
    try:
        if out is None:
            Writer(store)  # refuse before computing anything when the store cannot be written
        record = store.run(run_id)
        report = heatmaps_report(store, run_id, store.artifact_paths(run_id), options)
        report.summary["run"] = {"run_id": run_id, "run_name": record["run_name"],
                                 "experiment_id": record["experiment_id"]}
        label = report.summary["attribution"]["label"]
        dest = ToFolder(out) if out is not None else IntoRun(store, run_id)
        return publish(report, dest, echo=echo, headline=f"heatmaps of run {run_id} ({label})").summary
    finally:
        if own:
            store.close()
