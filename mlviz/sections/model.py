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

from mlviz.analysis.predictions import NO_GROUPING
from mlviz.errors import MlvizError
from mlviz.publish import IntoRun, ToFolder, publish
from mlviz.report import Report
from mlviz.store.write import Writer
from mlviz.text import first_line

DEFAULT_PREDICTIONS = ("predictions/val_predictions.csv", "predictions/val_predictions.parquet",
                       "val_predictions.csv", "predictions.csv", "predictions.parquet")


@dataclass
class ModelOutcome:
    run_id: str
    folder: Path | None
    made: list[str]
    skipped: list[dict]
    headline: dict[str, float]


def find_predictions(paths: list[str], wanted: str | None = None) -> tuple[str | None, str | None]:
    """(final predictions, per-epoch predictions) among a run's artifact paths."""
    if wanted and wanted not in paths:
        raise MlvizError(f"the run has no artifact '{wanted}' (it has: {', '.join(paths[:10]) or 'none'})")
    final = wanted or next((p for p in DEFAULT_PREDICTIONS if p in paths), None) or next(
        (p for p in paths if "predictions" in p.lower() and p.endswith((".csv", ".parquet"))
         and "epoch" not in p.lower()), None)
    per_epoch = next((p for p in paths if "predictions" in p.lower() and "epoch" in p.lower()
                      and p.endswith((".csv", ".parquet"))), None)
    return final, per_epoch


def read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise MlvizError(f"cannot read predictions {path.name}: {first_line(exc)}") from None


def load_images(path: Path | None) -> np.ndarray | None:
    if path is None or not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return data["images"] if "images" in data.files else None


def analyse_run_predictions(folder: Path, final: str, per_epoch: str | None, column_map=None,
                            images: np.ndarray | None = None, options: dict | None = None):
    """Pure step on downloaded files: predictions (and per-epoch ones) → the diagnostics report."""
    from mlviz.analysis.predictions import predictions_from_frame
    from mlviz.figures import as_report
    from mlviz.figures.model import analyse_predictions

    contract_path = (folder / final).parent / "contract.json"
    read_contract = contract_path.exists() and column_map is None
    contract = json.loads(contract_path.read_text()) if read_contract else None
    group_id = (options or {}).get("group_id") or None  # MLproject passes "" for "not given"
    preds = predictions_from_frame(read_table(folder / final), column_map=column_map, contract=contract,
                                   group_column=group_id)
    per, per_note = None, None
    if per_epoch:
        per_frame = read_table(folder / per_epoch)
        if "epoch" in per_frame.columns:
            per_group = group_id
            if group_id and group_id.strip().lower() not in NO_GROUPING and group_id not in per_frame.columns:
                per_group = "none"
                per_note = (f"the per-epoch predictions have no column '{group_id}': their intervals "
                            "(training_progress/) resample rows")
            per = predictions_from_frame(per_frame, column_map=column_map, contract=contract, group_column=per_group)
    results, captions, renderers, skipped, headline = analyse_predictions(preds, per_epoch=per, images=images,
                                                                          options=options)
    report = as_report("best_model", results, captions, renderers, skipped)
    report.metrics = headline
    report.notes = [*report.notes, *getattr(preds, "notes", [])] + ([per_note] if per_note else [])
    report.summary["bootstrap"] = bootstrap_summary(preds)
    return report, headline, preds


def bootstrap_summary(preds) -> dict:
    """What the intervals resampled, for summary.json: rows, or whole groups of a column (and how many)."""
    from mlviz.analysis.diagnostics import bootstrap_unit

    unit = bootstrap_unit(preds)
    unit["n_rows"] = int(preds.n)
    unit["note"] = next((n for n in getattr(preds, "notes", []) if n.startswith("bootstrap")
                         or "--group-id" in n), None)
    return unit


def _heatmaps(store, run_id: str, paths: list[str], tmp: Path, options: dict, report: Report | None = None,
              preds=None, images: np.ndarray | None = None) -> Report:
    """The heatmaps/ section of the run. Never raises for a run without a model or without torch: that is
    a skipped figure with its reason. When the CAM cannot be computed, options["fallback"] (e.g.
    occlusion) is drawn instead, labelled as what it is. With the report, its case gallery and hardest
    samples get the same method's maps over their images."""
    from mlviz.sections.heatmaps import (
        SECTION,
        attribution_available,
        fetch_inputs,
        heatmaps_report,
        model_artifacts,
    )

    def skip(reason):
        return Report("heatmaps", skipped=[{"section": SECTION, "figure": "heatmaps", "reason": reason}])

    if model_artifacts(paths, options.get("factory")) is None:
        return skip("the run logged no model (checkpoints/model_state.pt + model_config.json, or MLmodel)")
    why = attribution_available()
    if why:
        return skip(why)
    try:
        src = fetch_inputs(store, run_id, paths, tmp / "attribution-inputs", options)
    except MlvizError as exc:
        return skip(str(exc))
    used = options
    try:
        cams = heatmaps_report(store, run_id, paths, options, src=src)
    except MlvizError as exc:
        fallback = options.get("fallback")
        if not fallback or fallback == options.get("method"):
            return skip(str(exc))
        used = {**options, "method": fallback, "faithfulness_methods": None}
        try:
            cams = heatmaps_report(store, run_id, paths, used, src=src)
        except MlvizError as exc2:
            return skip(f"{exc}; the fallback {fallback} failed too: {exc2}")
        method = options.get("method") or "gradcam"
        cams.skip(SECTION, method, f"{exc}; drew {cams.summary['attribution']['label']} instead")
    if report is not None and images is not None:
        cams.skipped += _overlay_selections(report, preds, images, src, used)
    cams.tags = {}
    return cams


THUMBNAIL_SIDE = 96


def _decoded(value: str) -> str:
    """The value with percent-encoding undone until it no longer changes (%252e%252e → %2e%2e → ..)."""
    from urllib.parse import unquote

    for _ in range(5):
        decoded = unquote(value)
        if decoded == value:
            break
        value = decoded
    return value


def _image_source(value: str, artifacts: set[str], image_root: Path | None) -> tuple[str, str | Path]:
    """Where the image a predictions table names may be read from: ("artifact", path of the run),
    ("file", a file under the image root), ("refused", why) or ("missing", why).

    A run written by someone else (a shared server) could name any file on this machine, so local files
    come only from the folder the user named: no `..`, no absolute path or symlink leading out of it,
    not even percent-encoded."""
    raw = value.strip()
    if raw.lower().startswith("file:"):
        from urllib.parse import urlparse

        raw = urlparse(raw).path
    for form in (raw, _decoded(raw)):
        parts = form.replace("\\", "/").split("/")
        if ".." in parts:
            return "refused", "a '..' path"
    if raw in artifacts:
        return "artifact", raw
    if image_root is None:
        return "missing", "not an artifact of the run (local files are read only under --image-root)"
    root = image_root.resolve()
    decoded = _decoded(raw)
    if decoded != raw and Path(decoded).is_absolute() and not Path(raw).is_absolute():
        return "refused", "an encoded absolute path"
    candidate = Path(raw) if Path(raw).is_absolute() else root / raw
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        if not candidate.resolve().is_relative_to(root):
            return "refused", "outside the image root"
        return "missing", "not found"
    if not real.is_relative_to(root):
        return "refused", "outside the image root" if not candidate.is_symlink() else "a symlink out of the image root"
    return ("file", real) if real.is_file() else ("missing", "not a file")


def _thumbnails_from_paths(report, preds, store, run_id: str, paths: list[str], dst: Path,
                           image_root: str | Path | None = None) -> list[dict]:
    """Thumbnails for hardest_samples / case_gallery when the predictions name their images by path (an
    artifact of the run, or a file under `image_root`, the folder the user named) instead of indexing an
    image array. Only the shown samples' images are fetched; each is fitted into THUMBNAIL_SIDE pixels.
    Returns skipped notes."""
    from PIL import Image

    from mlviz.analysis.diagnostics import Pixels, display_images

    col = getattr(preds, "image_path_column", None)
    if not col:
        return []
    root = Path(image_root) if image_root is not None else None  # a folder: best_model checked it
    artifacts = set(paths)
    notes = []
    for name in ("case_gallery", "hardest_samples"):
        sel = report.results.get(("best_model", name))
        if sel is None or sel.pixels.array is not None or col not in sel.table:
            continue
        tiles, missing, refused = [], [], []
        for value in sel.table[col].astype(str):
            kind, where = _image_source(value, artifacts, root)
            local = None
            if kind == "artifact":
                local = store.download(run_id, str(where), dst / Path(str(where)).parent)
            elif kind == "file":
                local = Path(where)
            if local is None or not local.is_file():
                (refused if kind == "refused" else missing).append((value, where))
                tiles.append(np.zeros((THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3)))
                continue
            with Image.open(local) as img:
                img = img.convert("RGB")
                img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                canvas = Image.new("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                canvas.paste(img, ((THUMBNAIL_SIDE - img.width) // 2, (THUMBNAIL_SIDE - img.height) // 2))
                tiles.append(np.asarray(canvas, dtype=float) / 255.0)
        if len(missing) + len(refused) == len(tiles):
            value, why = (refused or missing)[0]
            where = f"under --image-root {root}" if root is not None else "artifacts of the run (pass --image-root " \
                "DIR for local files)"
            notes.append({"section": "best_model", "figure": f"{name} thumbnails",
                          "reason": f"none of the {len(tiles)} images named in '{col}' could be read from {where}; "
                                    f"e.g. {value}: {why}"})
            continue
        lost = [f"{len(missing)} not found"] * bool(missing) + [f"{len(refused)} refused (outside the image root)"] \
            * bool(refused)
        sel.pixels = Pixels(display_images(np.stack(tiles)),
                            f"from the '{col}' column" + (f"; {', '.join(lost)} (black)" if lost else ""))
        sel.table["thumbnail"] = np.arange(len(sel.table))
    return notes


def _overlay_selections(report, preds, images: np.ndarray, src: Path, options: dict) -> list[dict]:
    """Maps over the thumbnails of best_model/case_gallery and hardest_samples (for the predicted class
    of each sample's head); a failure leaves the thumbnails plain and says why."""
    from mlviz.sections.heatmaps import sample_maps

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
               store=None, echo=print, heatmaps: dict | None = None, related: list | None = None,
               image_root: str | Path | None = None, embedding: dict | None = None,
               progress: bool = False) -> ModelOutcome:
    """Diagnostics of one run's predictions, logged into that run (or written to `out`).

    `embedding`: options of the embedding/ section (see mlviz.sections.embedding) to add the run's
    2-D map to the same report; None leaves it out.
    `image_root`: the only folder local images named by the predictions may be read from.

    `heatmaps`: options of the heatmaps/ section (see mlviz.sections.heatmaps.DEFAULTS) to add it to the
    same run and index.html; None leaves it out. `related`: reports to link from its index.html."""
    from mlviz.store.read import Store

    if image_root is not None and not Path(image_root).is_dir():
        raise MlvizError(f"--image-root {image_root} is not a folder")
    own = store is None
    store = store or Store(tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="mlviz-model-"))
    try:
        if out is None:
            Writer(store)  # refuse before computing anything when the store cannot be written
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
            report.skipped.extend(_thumbnails_from_paths(report, preds, store, run_id, paths, tmp / "images",
                                                          image_root))
        report.summary = {"run": {"run_id": run_id, "run_name": record["run_name"],
                                  "experiment_id": record["experiment_id"], "predictions": final,
                                  "per_epoch_predictions": per_epoch, "images": image_path},
                          "headline_metrics": headline, "bootstrap": report.summary.get("bootstrap"),
                          "notes": list(report.notes)}
        report.tags = {"mlviz.diagnostics": "best_model"}
        report.related = list(related or [])
        if heatmaps is not None:
            report.extend(_heatmaps(store, run_id, paths, tmp, heatmaps, report, preds, images))
        if embedding is not None:
            from mlviz.sections.embedding import embedding_for_best_model

            mapped, why = embedding_for_best_model(store, run_id, tmp / "embedding", embedding)
            if mapped is None:
                report.skip("embedding", "embedding", why)
            else:
                report.summary["embedding"] = mapped.summary
                mapped.tags = {}
                report.extend(mapped)
        dest = ToFolder(out) if out is not None else IntoRun(store, run_id)
        done = publish(report, dest, echo=echo, progress=progress, headline=f"best-model diagnostics of run {run_id}")
        return ModelOutcome(run_id, done.folder, done.made, done.skipped, headline)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if own:
            store.close()
