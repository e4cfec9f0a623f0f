"""One model's diagnostics: a run's logged predictions → analyses → figures → logged into that run.

`best_model` is what `mlviz best-model` and `mlviz visualize` (for the sweep's best run) call. It finds
the predictions artifact (CSV or Parquet; path configurable), its per-epoch twin and the images the
predictions name, applies the column mapping, and logs the `best_model/` and `training_progress/`
sections plus headline metrics (`mlviz.auc`, `mlviz.ece`, ...) into the model's own run, so the MLflow
UI can show two candidates side by side and sort runs by them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlviz.errors import MlvizError

DEFAULT_PREDICTIONS = ("predictions/val_predictions.csv", "predictions/val_predictions.parquet",
                       "val_predictions.csv", "predictions.csv", "predictions.parquet")
SECTIONS = ("best_model", "training_progress", "heatmaps")
# Also logged as images of the MLflow UI's image grid, so candidates' diagnostics sit side by side there.
GRID_FIGURES = ("best_model/roc_curve.png", "best_model/precision_recall.png", "best_model/calibration.png",
                "best_model/confusion_matrix.png", "best_model/case_gallery.png", "heatmaps/gradcam_error_gallery.png",
                "best_model/regression_predicted_vs_true.png")


@dataclass
class ModelOutcome:
    run_id: str
    folder: Path | None
    made: list[str]
    skipped: list[dict]
    headline: dict[str, float]


def find_predictions(paths: list[str], wanted: str | None = None) -> tuple[str | None, str | None]:
    """(final predictions, per-epoch predictions) among a run's artifact paths."""
    if wanted:
        if wanted not in paths:
            raise MlvizError(f"the run has no artifact '{wanted}' (it has: {', '.join(paths[:10]) or 'none'})")
        final = wanted
    else:
        final = next((p for p in DEFAULT_PREDICTIONS if p in paths), None)
        if final is None:
            final = next((p for p in paths if "predictions" in p.lower() and p.endswith((".csv", ".parquet"))
                          and "epoch" not in p.lower()), None)
    per_epoch = next((p for p in paths if "predictions" in p.lower() and "epoch" in p.lower()
                      and p.endswith((".csv", ".parquet"))), None)
    return final, per_epoch


def read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise MlvizError(f"cannot read predictions {path.name}: {str(exc).splitlines()[0]}") from None


def load_images(path: Path | None) -> np.ndarray | None:
    if path is None or not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return data["images"] if "images" in data.files else None


def analyse_run_predictions(folder: Path, final: str, per_epoch: str | None, column_map=None,
                            images: np.ndarray | None = None, options: dict | None = None):
    """Pure step on downloaded files: predictions (and per-epoch ones) → the diagnostics report."""
    from mlviz.analysis.predictions import predictions_from_frame
    from mlviz.diagnostics import analyse_predictions
    from mlviz.pipeline import Report

    contract = None
    contract_path = (folder / final).parent / "contract.json"
    if contract_path.exists() and column_map is None:
        contract = json.loads(contract_path.read_text())
    preds = predictions_from_frame(read_table(folder / final), column_map=column_map, contract=contract)
    per = None
    if per_epoch:
        per_frame = read_table(folder / per_epoch)
        if "epoch" in per_frame.columns:
            per = predictions_from_frame(per_frame, column_map=column_map, contract=contract)
    results, captions, renderers, skipped, headline = analyse_predictions(preds, per_epoch=per, images=images,
                                                                          options=options)
    return Report(None, results, captions, renderers, skipped), headline, preds


def _heatmaps(store, run_id: str, paths: list[str], root: Path, options: dict, report=None, preds=None,
              images: np.ndarray | None = None) -> tuple[list[dict], list[dict]]:
    """The heatmaps/ section of the run into root/mlviz/heatmaps: (figures, skipped). Never raises for
    a run without a model or without torch: that is a skipped figure with its reason. When the CAM
    cannot be computed, options["fallback"] (e.g. occlusion) is drawn instead, labelled as what it is.
    With the report, its case gallery and hardest samples get the same method's maps over their images."""
    from mlviz.heatmap_pipeline import (
        SECTION,
        attribution_available,
        fetch_inputs,
        figures_of,
        heatmaps_into,
        model_artifacts,
    )

    def skip(reason):
        return [], [{"section": SECTION, "figure": "heatmaps", "reason": reason}]

    if model_artifacts(paths, options.get("factory")) is None:
        return skip("the run logged no model (checkpoints/model_state.pt + model_config.json, or MLmodel)")
    why = attribution_available()
    if why:
        return skip(why)
    folder = root / "mlviz" / SECTION
    try:
        src = fetch_inputs(store, run_id, paths, root.parent / "attribution-inputs", options)
    except MlvizError as exc:
        return skip(str(exc))
    used = options
    try:
        summary = heatmaps_into(store, run_id, paths, folder, options, src=src)
        extra = []
    except MlvizError as exc:
        fallback = options.get("fallback")
        if not fallback or fallback == options.get("method"):
            return skip(str(exc))
        shutil.rmtree(folder, ignore_errors=True)
        used = {**options, "method": fallback, "faithfulness_methods": None}
        try:
            summary = heatmaps_into(store, run_id, paths, folder, used, src=src)
        except MlvizError as exc2:
            return skip(f"{exc}; the fallback {fallback} failed too: {exc2}")
        method = options.get("method") or "gradcam"
        extra = [{"section": SECTION, "figure": method,
                  "reason": f"{exc}; drew {summary['attribution']['label']} instead"}]
    if report is not None and images is not None:
        extra += _overlay_selections(report, preds, images, src, used)
    return figures_of(summary), summary["skipped"] + extra


THUMBNAIL_SIDE = 96


def _thumbnails_from_paths(report, preds, store, run_id: str, paths: list[str], dst: Path) -> list[dict]:
    """Thumbnails for hardest_samples / case_gallery when the predictions name their images by path (an
    artifact of the run, or a file on this machine) instead of indexing an image array. Only the shown
    samples' images are fetched; each is fitted into THUMBNAIL_SIDE pixels. Returns skipped notes."""
    from PIL import Image

    from mlviz.analysis.diagnostics import Pixels, display_images

    col = getattr(preds, "image_path_column", None)
    if not col:
        return []
    artifacts = set(paths)
    notes = []
    for name in ("case_gallery", "hardest_samples"):
        sel = report.results.get(("best_model", name))
        if sel is None or sel.pixels.array is not None or col not in sel.table:
            continue
        tiles, missing = [], []
        for value in sel.table[col].astype(str):
            local = Path(value)
            if value in artifacts:
                local = store.download(run_id, value, dst / Path(value).parent)
            if not local.is_file():
                missing.append(value)
                tiles.append(np.zeros((THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3)))
                continue
            with Image.open(local) as img:
                img = img.convert("RGB")
                img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                canvas = Image.new("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                canvas.paste(img, ((THUMBNAIL_SIDE - img.width) // 2, (THUMBNAIL_SIDE - img.height) // 2))
                tiles.append(np.asarray(canvas, dtype=float) / 255.0)
        if len(missing) == len(tiles):
            notes.append({"section": "best_model", "figure": f"{name} thumbnails",
                          "reason": f"none of the {len(tiles)} images named in '{col}' was found "
                                    f"(neither an artifact of the run nor a file here), e.g. {missing[0]}"})
            continue
        sel.pixels = Pixels(display_images(np.stack(tiles)),
                            f"from the '{col}' column" + (f"; {len(missing)} not found (black)" if missing else ""))
        sel.table["thumbnail"] = np.arange(len(sel.table))
    return notes


def _overlay_selections(report, preds, images: np.ndarray, src: Path, options: dict) -> list[dict]:
    """Maps over the thumbnails of best_model/case_gallery and hardest_samples (for the predicted class
    of each sample's head); a failure leaves the thumbnails plain and says why."""
    from mlviz.heatmap_pipeline import sample_maps

    skipped = []
    idx_all = preds.image_indices(len(images)) if preds is not None else None
    for name in ("case_gallery", "hardest_samples"):
        sel = report.results.get(("best_model", name))
        if sel is None or sel.pixels.array is None or idx_all is None:
            continue
        rows = sel.table["row"].to_numpy()
        try:
            maps, label = sample_maps(src, images[np.asarray(idx_all, dtype=int)[rows]],
                                      [str(h) for h in sel.table["head"]], options)
        except MlvizError as exc:
            skipped.append({"section": "best_model", "figure": f"{name} overlays", "reason": str(exc)})
            continue
        sel.pixels.overlays = maps
        sel.pixels["overlay"] = f"{label} for the predicted class, scaled per map to [0, 1]"
    return skipped


def best_model(run_id: str, tracking_uri: str | None = None, out: str | Path | None = None,
               predictions: str | None = None, column_map=None, options: dict | None = None,
               store=None, echo=print, heatmaps: dict | None = None) -> ModelOutcome:
    """Diagnostics of one run's predictions, logged into that run (or written to `out`).

    `heatmaps`: options of the heatmaps/ section (see mlviz.heatmap_pipeline.DEFAULTS) to add it to the
    same run and index.html; None leaves it out."""
    from mlviz.pipeline import render_report
    from mlviz.store.read import Store

    own = store is None
    store = store or Store(tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="mlviz-model-"))
    try:
        record = store.run(run_id)
        paths = store.artifact_paths(run_id)
        final, per_epoch = find_predictions(paths, predictions)
        if final is None:
            raise MlvizError(f"run {run_id} logged no predictions artifact (looked for {', '.join(DEFAULT_PREDICTIONS)}; "
                             "pass --predictions PATH)")
        src = tmp / "src"
        for p in {final, per_epoch, str(Path(final).parent / "contract.json")} - {None}:
            if p in paths:
                store.download(run_id, p, src / Path(p).parent)
        image_path = "data/val_images.npz" if "data/val_images.npz" in paths else None
        if image_path:
            store.download(run_id, image_path, src / "data")
        images = load_images(src / image_path) if image_path else None
        report, headline, preds = analyse_run_predictions(src, final, per_epoch, column_map, images, options)
        if images is None:
            report.skipped.extend(_thumbnails_from_paths(report, preds, store, run_id, paths, tmp / "images"))
        summary = {"run": {"run_id": run_id, "run_name": record["run_name"], "experiment_id": record["experiment_id"],
                           "predictions": final, "per_epoch_predictions": per_epoch, "images": image_path},
                   "headline_metrics": headline}
        more: list[dict] = []
        if heatmaps is not None:
            more, skipped = _heatmaps(store, run_id, paths, tmp / "render", heatmaps, report, preds, images)
            report.skipped.extend(skipped)
        folder = render_report(report, tmp / "render", summary, more_figures=more)
        made = json.loads((folder / "summary.json").read_text())
        if out is not None:
            dest = Path(out) / "mlviz"
            dest.mkdir(parents=True, exist_ok=True)
            for section in SECTIONS:
                shutil.rmtree(dest / section, ignore_errors=True)
                if (folder / section).exists():
                    shutil.copytree(folder / section, dest / section)
            shutil.copy2(folder / "summary.json", dest / "best_model_summary.json")
            shutil.copy2(folder / "index.html", dest / ("index.html" if not (dest / "index.html").exists()
                                                        else "best_model_index.html"))
            where = str(dest)
        else:
            from mlviz.store import sink

            client = store.writer()
            for section in SECTIONS:
                sink.log_section(client, run_id, folder / section, section) if (folder / section).exists() else None
            sink.log_section(client, run_id, _index_only(folder, tmp), "", metrics=headline,
                             tags={"mlviz.diagnostics": "best_model"})
            sink.log_grid_images(client, run_id, [folder / f for f in GRID_FIGURES if (folder / f).exists()])
            where = f"run {run_id}"
        echo(f"best-model diagnostics of run {run_id}: {len(made['figures_made'])} figures written to {where}")
        for s in made["figures_skipped"]:
            echo(f"  skipped {s['section']}/{s['figure']}: {s['reason']}")
        return ModelOutcome(run_id, Path(out) / "mlviz" if out else None, made["figures_made"],
                            made["figures_skipped"], headline)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if own:
            store.close()


def _index_only(folder: Path, tmp: Path) -> Path:
    """A folder holding just the run's index.html and summary (logged at mlviz/)."""
    top = tmp / "top"
    top.mkdir(exist_ok=True)
    shutil.copy2(folder / "index.html", top / "index.html")
    shutil.copy2(folder / "summary.json", top / "best_model_summary.json")
    return top
