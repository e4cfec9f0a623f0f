"""The embedding/ section: a run's features → a 2-D map, its coordinates and metadata, an interactive page.

Features come, in this order, from files the user names (`features`/`metadata` options), from the run's
logged embeddings (`embeddings/penultimate.npy` + `embeddings/metadata.csv` as `mlviz demo` logs them, or
any `embeddings/*.npy` with a metadata CSV whose rows pair with it), or from the run's model at a layer
(`options["layer"]`; default the input of the last linear layer) over `data/val_images.npz`. Thumbnails
for the page come from that npz. Everything is read and checked before anything is written, so bad
input leaves the store as it was.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlviz.errors import MlvizError
from mlviz.files import load_array
from mlviz.report import Figure, Report
from mlviz.text import first_line

SECTION = "embedding"
GRID_KEY = "mlviz_embedding"
IMAGES = "data/val_images.npz"
PREDICTIONS = "predictions/val_predictions.csv"
DEFAULTS = {"method": "umap", "color_by": None, "n_neighbors": 15, "min_dist": 0.1, "perplexity": 30.0, "seed": 0,
            "layer": None, "features": None, "metadata": None, "batch_size": 256, "pca_dims": 50,
            "n_epochs": None}


@dataclass
class EmbeddingInputs:
    """Features and the rows they describe, with images for thumbnails when there are any."""

    features: np.ndarray
    metadata: pd.DataFrame | None
    source: str  # where the features came from, in words
    images: np.ndarray | None = None  # one per row (thumbnails)
    class_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def _options(options: dict | None) -> dict:
    return {**DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None}}


# --------------------------------------------------------------------------- figures-as-data
def embedding_report(features, metadata: pd.DataFrame | None = None, options: dict | None = None) -> Report:
    """The embedding/ section as a Report: `embedding.png` (also grid key `mlviz_embedding`) with
    `embedding_coords.npy`, `embedding_metadata.csv` and `embedding.html` beside it.

    options: method, color_by, n_neighbors, min_dist, perplexity, seed, pca_dims, n_epochs (UMAP; None:
    200, or 500 for at most 5,000 points), thumbnails (images or
    data URIs, one per row), class_names, source (words for the summary), notes."""
    from mlviz.analysis.embedding import embed
    from mlviz.render.embedding import embedding_html, plot_embedding, quality_text, title_text

    o = _options(options)
    result = embed(features, metadata, method=o["method"], color_by=o["color_by"], n_neighbors=int(o["n_neighbors"]),
                   min_dist=float(o["min_dist"]), perplexity=float(o["perplexity"]), seed=int(o["seed"]),
                   pca_dims=o["pca_dims"] or None, class_names=o.get("class_names"),
                   n_epochs=int(o["n_epochs"]) if o["n_epochs"] else None)
    buf = io.BytesIO()
    np.save(buf, result.coords.astype(np.float32))
    page = embedding_html(result, o.get("thumbnails"))
    q = result.quality
    caption = (f"{title_text(result)}; {quality_text(result)}"
               + ("; black ×: misclassified" if "correct" in result.metadata and not result.metadata["correct"].all()
                  else "") + ". Hover the points in embedding.html.")
    figure = Figure(SECTION, "embedding", caption, result, draw=plot_embedding, grid_key=GRID_KEY,
                    files={"embedding_coords.npy": buf.getvalue(),
                           "embedding_metadata.csv": result.metadata.to_csv(index=False),
                           "embedding.html": page})
    metrics = {name: value for name, value in (("mlviz.embedding.trustworthiness", q.trustworthiness),
                                               ("mlviz.embedding.knn_accuracy_2d", q.knn_accuracy_2d),
                                               ("mlviz.embedding.knn_accuracy_original", q.knn_accuracy_original))
               if value is not None}
    notes = list(o.get("notes") or []) + result.notes
    summary = {"embedding": {"source": o.get("source"), "method": result.method, "params": result.params,
                             "n_samples": result.n_samples, "n_features": result.n_features,
                             "color_by": result.color_by, "color_columns": result.color_columns,
                             "quality": q, "seconds": round(result.seconds, 2), "notes": notes}}
    return Report(kind="embedding", figures=[figure], summary=summary, metrics=metrics,
                  tags={"mlviz.embedding": result.method}, notes=notes)


# --------------------------------------------------------------------------- reading inputs
def read_features_file(path) -> np.ndarray:
    """An .npy array (or the first array of an .npz), never unpickling."""
    return load_array(path, "embedding")


def read_metadata_file(path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise MlvizError(f"no metadata file at {p}")
    try:
        return pd.read_csv(p) if p.suffix != ".parquet" else pd.read_parquet(p)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, ValueError, ImportError) as exc:
        raise MlvizError(f"cannot read {p.name}: {first_line(exc)}") from None


def _npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MlvizError(f"cannot read {path.name}: {first_line(exc)}") from None


def _rows_for(meta: pd.DataFrame | None, n_images: int, sample_ids) -> np.ndarray | None:
    """For each metadata row, its image's row in the npz (image_index, else sample_id, else row order)."""
    if meta is None:
        return None
    if "image_index" in meta and pd.api.types.is_integer_dtype(meta["image_index"]) \
            and meta["image_index"].between(0, n_images - 1).all():
        return meta["image_index"].to_numpy()
    if "sample_id" in meta and sample_ids is not None:
        where = {str(s): i for i, s in enumerate(sample_ids)}
        idx = meta["sample_id"].astype(str).map(where)
        if idx.notna().all():
            return idx.to_numpy(dtype=int)
    return np.arange(n_images) if len(meta) == n_images else None


def _logged_embeddings(paths: list[str]) -> tuple[str, str | None] | None:
    """(features, metadata) artifact paths of embeddings the run logged, or None."""
    arrays = sorted(p for p in paths if p.startswith("embeddings/") and p.endswith(".npy"))
    if not arrays:
        return None
    arr = "embeddings/penultimate.npy" if "embeddings/penultimate.npy" in arrays else arrays[0]
    stem = arr[: -len(".npy")]
    tables = [p for p in paths if p.startswith("embeddings/") and p.endswith(".csv")]
    meta = next((p for p in (f"{stem}.csv", f"{stem}_metadata.csv", "embeddings/metadata.csv") if p in tables),
                tables[0] if len(tables) == 1 else None)
    if meta is None and PREDICTIONS in paths:
        meta = PREDICTIONS
    return arr, meta


def gather_inputs(store, run_id: str | None, tmp: Path, options: dict | None = None) -> EmbeddingInputs:
    """Read (and download) what the map needs; raises MlvizError, before anything is written, on bad input."""
    o = _options(options)
    tmp = Path(tmp)
    paths = store.artifact_paths(run_id) if run_id else []
    notes: list[str] = []
    images = class_names = sample_ids = None
    if IMAGES in paths:
        arrays = _npz(store.download(run_id, IMAGES, tmp / "data"))
        images = arrays.get("images")
        sample_ids = arrays.get("sample_ids")
        class_names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None

    if o["features"] is not None:
        features = read_features_file(o["features"])
        meta = read_metadata_file(o["metadata"]) if o["metadata"] is not None else None
        source = f"file {Path(o['features']).name}"
    elif o["layer"] is None and (found := _logged_embeddings(paths)) is not None:
        arr, meta_path = found
        features = read_features_file(store.download(run_id, arr, tmp / "embeddings"))
        if o["metadata"] is not None:
            meta = read_metadata_file(o["metadata"])
        elif meta_path is not None:
            meta = read_metadata_file(store.download(run_id, meta_path, tmp / Path(meta_path).parent))
            if meta_path == PREDICTIONS and len(meta) != len(features):
                meta, meta_path = None, None
                notes.append(f"the run's {PREDICTIONS} does not pair with {arr}: points are not labelled")
        else:
            meta = None
            notes.append(f"no metadata table beside {arr}: points are not labelled")
        source = f"logged {arr}" + (f" with {meta_path}" if meta_path and o["metadata"] is None else "")
    else:
        features, meta, source = _from_model(store, run_id, paths, tmp, o, images, sample_ids, class_names)
    thumbs = None
    if images is not None and np.ndim(features) >= 1:
        rows = _rows_for(meta, len(images), sample_ids) if meta is not None else (
            np.arange(len(images)) if len(images) == len(features) else None)
        if rows is not None and len(rows) == len(features):
            thumbs = images[rows]
        else:
            notes.append(f"{IMAGES} does not pair with the embedding rows: no thumbnails")
    return EmbeddingInputs(features, meta, source, thumbs, class_names, notes)


def _from_model(store, run_id, paths, tmp, o, images, sample_ids, class_names):
    """Features at `o["layer"]` of the run's model over its images, with the run's predictions (or the
    model's own) as metadata."""
    from mlviz.attribution.artifacts import model_artifacts

    if run_id is None:
        raise MlvizError("name a run (--run) or a features file (--features)")
    needed = model_artifacts(paths)
    if needed is None or images is None:
        what = "no embeddings (embeddings/*.npy)" if o["layer"] is None else f"nothing to take layer '{o['layer']}' from"
        missing = " and ".join(m for m, gone in (("a model", needed is None), (IMAGES, images is None)) if gone)
        raise MlvizError(f"run {run_id} logged {what}: it has no {missing}")
    from mlviz.attribution.features import extract_features
    from mlviz.attribution.load import load_model

    for p in needed:
        store.download(run_id, p, tmp / "model" / Path(p).parent)
    loaded = load_model(tmp / "model")
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    got = extract_features(loaded.model, x, o["layer"], batch_size=int(o["batch_size"]))
    meta = None
    if PREDICTIONS in paths:
        frame = read_metadata_file(store.download(run_id, PREDICTIONS, tmp / "predictions"))
        rows = _rows_for(frame, len(x), sample_ids)
        if rows is not None and len(frame) == len(x):
            meta = frame.iloc[np.argsort(rows)].reset_index(drop=True)
    if meta is None:
        n = len(x)
        base: dict = {"sample_id": sample_ids if sample_ids is not None else np.arange(n), "image_index": np.arange(n)}
        with np.load(tmp / "data" / "val_images.npz", allow_pickle=False) as data:
            labels = data["labels"] if "labels" in data.files else None
        if labels is not None and labels.ndim == 1:
            base["label"] = labels
        if got.probabilities is not None:
            names = class_names if class_names and len(class_names) == got.probabilities.shape[1] else [
                str(i) for i in range(got.probabilities.shape[1])]
            for c, name in enumerate(names):
                base[f"prob_{name}"] = got.probabilities[:, c]
        meta = pd.DataFrame(base)
    return got.features, meta, f"{got.layer} of the run's model over {IMAGES}"


# --------------------------------------------------------------------------- commands
def run_embedding(run_id: str | None, tracking_uri: str | None = None, out: str | Path | None = None,
                  options: dict | None = None, store=None, echo=print):
    """`mlviz embed`: the embedding/ section of one run, logged into that run (or written to `out`).
    Without a run, `options["features"]` (and `metadata`) are mapped and written to `out`."""
    from mlviz.publish import IntoRun, ToFolder, publish

    o = _options(options)
    if run_id is None and o["features"] is None:
        raise MlvizError("name a run (--run RUN_ID) or a features file (--features PATH.npy)")
    if run_id is None and out is None:
        raise MlvizError("without --run there is no run to log into: pass --out DIR")
    own = store is None and run_id is not None
    if own:
        from mlviz.store.read import Store

        store = Store(tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="mlviz-embed-"))
    try:
        if run_id is not None and out is None:
            from mlviz.store.write import Writer

            Writer(store)  # refuse a store that logging would change beyond what was asked, before any work
        record = store.run(run_id) if run_id else None
        inputs = gather_inputs(store, run_id, tmp, o)
        report = embedding_report(inputs.features, inputs.metadata,
                                  {**o, "thumbnails": inputs.images, "class_names": inputs.class_names,
                                   "source": inputs.source, "notes": inputs.notes})
        if record is not None:
            report.summary["run"] = {"run_id": run_id, "run_name": record["run_name"],
                                     "experiment_id": record["experiment_id"]}
        dest = ToFolder(out) if out is not None else IntoRun(store, run_id)
        what = f"embedding of run {run_id}" if run_id else f"embedding of {inputs.source}"
        return publish(report, dest, echo=echo, headline=what)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if own:
            store.close()


def embedding_for_best_model(store, run_id: str, tmp, options: dict | None = None) -> tuple[Report | None, str | None]:
    """The embedding/ section for `mlviz visualize`'s best model: (report, None), or (None, why not)."""
    paths = store.artifact_paths(run_id)
    o = _options(options)
    if o["layer"] is None and _logged_embeddings(paths) is None:
        from mlviz.attribution.artifacts import model_artifacts

        if model_artifacts(paths) is None or IMAGES not in paths:
            return None, "the run logged no embeddings (embeddings/*.npy) and no model with data/val_images.npz"
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return None, "the run logged no embeddings, and extracting them from its model needs PyTorch"
    try:
        inputs = gather_inputs(store, run_id, Path(tmp), o)
        report = embedding_report(inputs.features, inputs.metadata,
                                  {**o, "thumbnails": inputs.images, "class_names": inputs.class_names,
                                   "source": inputs.source, "notes": inputs.notes})
    except MlvizError as exc:
        return None, str(exc)
    return report, None
