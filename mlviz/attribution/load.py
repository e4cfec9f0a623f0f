"""Load a model and sample images from a local folder of a run's artifacts.

Models, in this order of preference:
1. a state dict + factory: `checkpoints/model_state.pt` and `checkpoints/model_config.json`
   ({"factory": "package.module:function", "config": {...}}), as every stage-2 run of `mlviz demo` logs.
   The state dict is read with `torch.load(weights_only=True)` only; a checkpoint holding pickled
   Python objects (a whole pickled model, custom classes) is refused: unpickling it could run any code.
   The factory is imported from the installed packages, never from the artifacts.
2. an MLflow PyTorch model folder (`MLmodel`), e.g. the best run's `model/`. MLflow 3 logs these by
   default in the 'pt2' format (a torch.export program, which MLflow checks to be free of pickles before
   loading); it is loaded with `mlflow.pytorch.load_model`, and unflattened (`torch.export.unflatten`) so
   its layers can carry hooks again. A pickle-format MLflow model (`data/model.pth`) is refused, as is a
   model folder that bundles Python code.

Images: a run's `data/val_images.npz` (images, labels, sample_ids, class_names, head_names), or a folder
of PNG/JPG files (class sub-folders give labels), chosen at random (seeded), or by outcome (correct /
misclassified) from the run's predictions (`predictions/val_predictions.csv`, read with its
`contract.json`) or from the model's own predictions.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlviz.attribution.prepare import one_line
from mlviz.errors import MlvizError

STATE_NAMES = ("model_state.pt", "model_state.pth", "state_dict.pt", "model.pt", "model.pth")
CONFIG_NAME = "model_config.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SELECTIONS = ("balanced", "random", "correct", "misclassified", "first", "all")


@dataclass
class LoadedModel:
    model: object  # torch.nn.Module, in eval mode
    source: str  # "state_dict" | "mlflow_pt2"
    path: str
    factory: str | None = None
    config: dict | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- models
def _read_config(path: Path) -> tuple[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MlvizError(f"cannot read {path.name}: {one_line(exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("factory"), str):
        raise MlvizError(f"{path.name} must hold {{\"factory\": \"module:function\", \"config\": {{...}}}}")
    return data["factory"], dict(data.get("config") or {})


def import_factory(spec: str):
    """`package.module:function` → the function (from installed code only)."""
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", spec or ""):
        raise MlvizError(f"factory '{spec}' is not of the form package.module:function")
    module, func = spec.split(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise MlvizError(f"cannot import the model factory '{spec}': {one_line(exc)}") from None
    if not callable(fn):
        raise MlvizError(f"the model factory '{spec}' is not callable")
    return fn


def read_state_dict(path: Path) -> dict:
    """torch.load(weights_only=True), with one-line errors for corrupt files and pickled code."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = f" ({found.group(1)})" if found else ""
            raise MlvizError(f"checkpoint {path.name} holds pickled Python objects{what} that would run code when "
                             "loaded; mlviz reads checkpoints with torch.load(weights_only=True) only: save "
                             "model.state_dict() and name a factory in model_config.json") from None
        raise MlvizError(f"checkpoint {path.name} is not a readable PyTorch file (corrupt?): {one_line(exc)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise MlvizError(f"checkpoint {path.name} is not a readable PyTorch file (corrupt or truncated?): "
                         f"{one_line(exc)}") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MlvizError(f"checkpoint {path.name} is not a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_state_model(state_path: Path, factory: str, config: dict, device: str = "cpu") -> LoadedModel:
    state = read_state_dict(state_path)
    fn = import_factory(factory)
    try:
        model = fn(config)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's factory is reported in one line
        raise MlvizError(f"the model factory '{factory}' failed on the logged config: {one_line(exc)}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        missing = re.search(r"Missing key\(s\) in state_dict: ([^.]*)", str(exc))
        unexpected = re.search(r"Unexpected key\(s\) in state_dict: ([^.]*)", str(exc))
        parts = [f"missing {missing.group(1)[:120]}" if missing else "",
                 f"unexpected {unexpected.group(1)[:120]}" if unexpected else ""]
        detail = "; ".join(p for p in parts if p) or one_line(exc)[:200]
        raise MlvizError(f"checkpoint {state_path.name} does not fit the model built by '{factory}': {detail}") from None
    model.to(device).eval()
    return LoadedModel(model, "state_dict", str(state_path), factory, config)


@contextlib.contextmanager
def _pickle_disallowed():
    """MLflow loads pickles when MLFLOW_ALLOW_PICKLE_DESERIALIZATION is set, and then also skips its check
    that a pt2 archive is pickle-free; force both off while loading."""
    key = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def load_mlflow_model(folder: Path, device: str = "cpu") -> LoadedModel:
    import yaml

    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MlvizError(f"cannot read {folder / 'MLmodel'}: {one_line(exc)}") from None
    flavor = (meta.get("flavors") or {}).get("pytorch")
    if not flavor:
        raise MlvizError(f"{folder} is an MLflow model without the pytorch flavour "
                         f"(flavours: {', '.join(meta.get('flavors') or {}) or 'none'})")
    if flavor.get("code"):
        raise MlvizError(f"the MLflow model {folder} bundles Python code ({flavor['code']}) that loading would put "
                         "on the import path; mlviz does not run code from artifacts: log a state dict and a "
                         "factory (checkpoints/model_state.pt + model_config.json) instead")
    data = folder / str(flavor.get("model_data") or "data")
    if (data / "model.pth").exists() or not (data / "model.pt2").exists():
        raise MlvizError(f"the MLflow model {folder} is a pickle ({'data/model.pth'}) and unpickling runs arbitrary "
                         "code; mlviz loads only pt2 (torch.export) MLflow models, or a state dict with "
                         "torch.load(weights_only=True): log with serialization_format='pt2', or log "
                         "checkpoints/model_state.pt + model_config.json")
    import torch

    from mlviz.store.models import load_pytorch_model

    try:
        with _pickle_disallowed():
            graph = load_pytorch_model(str(folder))  # checks the archive is pickle-free, then loads
            exported = torch.export.load(str(data / "model.pt2"))  # the same, already checked, archive
        model = torch.export.unflatten(exported)  # layers as submodules again, so hooks can see them
    except MlvizError:
        raise
    except Exception as exc:  # noqa: BLE001 - mlflow/torch raise many types for a bad archive
        raise MlvizError(f"cannot load the MLflow model {folder}: {one_line(exc)}") from None
    del graph
    notes = ["loaded from a torch.export (pt2) MLflow model: layers are graph modules (InterpreterModule), "
             "batch norm and dropout fixed as exported"]
    return LoadedModel(model, "mlflow_pt2", str(folder), notes=notes)


def load_model(path, *, device: str = "cpu", factory: str | None = None, config: dict | None = None) -> LoadedModel:
    """A model from a run's artifact folder, a checkpoints folder, a state-dict file, or an MLflow model folder.

    With a bare state-dict file, the factory and config come from `model_config.json` beside it, or from
    `factory=` / `config=`.
    """
    p = Path(path)
    if not p.exists():
        raise MlvizError(f"no such file or folder: {p}")
    if p.is_file():
        if p.suffix in (".pt2",):
            raise MlvizError(f"{p.name}: load a pt2 model through its MLflow model folder (the folder with MLmodel)")
        cfg_path = p.with_name(CONFIG_NAME)
        if factory is None:
            if not cfg_path.exists():
                raise MlvizError(f"{p.name} is a state dict without {CONFIG_NAME} beside it; pass factory='module:function' "
                                 "and config={...}")
            factory, cfg = _read_config(cfg_path)
            config = config if config is not None else cfg
        return load_state_model(p, factory, config or {}, device)
    if (p / "MLmodel").exists():
        return load_mlflow_model(p, device)
    for folder in (p / "checkpoints", p):
        state = next((folder / n for n in STATE_NAMES if (folder / n).exists()), None)
        if state is not None:
            cfg_path = folder / CONFIG_NAME
            if factory is None and not cfg_path.exists():
                continue
            fac, cfg = (factory, config or {}) if factory else _read_config(cfg_path)
            return load_state_model(state, fac, cfg if config is None else config, device)
    for sub in sorted(p.glob("*/MLmodel")) + sorted(p.glob("*/*/MLmodel")):
        return load_mlflow_model(sub.parent, device)
    raise MlvizError(f"no model in {p}: expected checkpoints/model_state.pt with model_config.json, or an MLflow "
                     "model folder (MLmodel)")


# --------------------------------------------------------------------------- images
@dataclass
class SampleSet:
    images: np.ndarray  # (N, C, H, W) or (N, C, T, H, W), float32
    sample_ids: np.ndarray
    indices: np.ndarray  # rows in the source (npz rows / sorted file list)
    labels: np.ndarray | None = None  # (N,) or (N, heads)
    predicted: np.ndarray | None = None  # (N, heads) from the predictions
    correct: np.ndarray | None = None  # (N,) every output right
    class_names: list[str] | None = None
    head_names: list[str] | None = None
    source: str = ""
    selection: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def _npz_arrays(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MlvizError(f"cannot read {path.name}: {one_line(exc)}") from None
    if "images" not in arrays:
        raise MlvizError(f"{path.name} has no 'images' array (it has: {', '.join(arrays) or 'none'})")
    return arrays


def _read_image_folder(folder: Path, size=None, channels=None) -> dict:
    from PIL import Image

    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise MlvizError(f"no PNG or JPG files in {folder}")
    classes = sorted({f.parent.name for f in files if f.parent != folder})
    labelled = bool(classes) and all(f.parent != folder for f in files)
    imgs, notes = [], []
    try:
        opened = [Image.open(f) for f in files]
    except OSError as exc:
        raise MlvizError(f"cannot read an image in {folder}: {one_line(exc)}") from None
    if channels is None:
        channels = 1 if all(i.mode in ("L", "I", "I;16", "1", "F") for i in opened) else 3
    if size is None:
        w, h = opened[0].size
        size = (h, w)
        if any(i.size != opened[0].size for i in opened):
            notes.append(f"images of different sizes were resized to {h}×{w}")
    for im in opened:
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
        imgs.append(a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0))
        im.close()
    out = {"images": np.stack(imgs), "sample_ids": np.array([f.stem for f in files]), "notes": notes}
    if labelled:
        out["labels"] = np.array([classes.index(f.parent.name) for f in files])
        out["class_names"] = np.array(classes)
    return out


def _predictions_for(path: Path) -> Path | None:
    root = path if path.is_dir() else path.parent
    for base in (root, root.parent):
        for name in ("predictions/val_predictions.csv", "val_predictions.csv"):
            if (base / name).exists():
                return base / name
    return None


def _pred_columns(frame: pd.DataFrame, head_names: list[str] | None, contract: dict | None) -> list[str] | None:
    if contract and contract.get("task") == "multioutput":
        return [f"pred_{h}" for h in contract.get("heads", {})]
    if "pred" in frame.columns:
        return ["pred"]
    if head_names:
        cols = [f"pred_{h}" for h in head_names]
        if all(c in frame.columns for c in cols):
            return cols
    cols = [c for c in frame.columns if c.startswith("pred_")]
    return cols or None


def _align_predictions(frame: pd.DataFrame, n: int, sample_ids: np.ndarray) -> pd.DataFrame | None:
    if "image_index" in frame.columns and frame["image_index"].between(0, n - 1).all():
        return frame.set_index("image_index").reindex(range(n))
    if "sample_id" in frame.columns:
        f = frame.assign(_sid=frame["sample_id"].astype(str)).drop_duplicates("_sid").set_index("_sid")
        return f.reindex([str(s) for s in sample_ids])
    if len(frame) == n:
        return frame.reset_index(drop=True)
    return None


def _model_predictions(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    from mlviz.attribution.prepare import prepare

    return prepare(model, images, batch_size=batch_size).predicted


def load_samples(path, *, n: int = 8, select: str = "balanced", seed: int = 0, predictions="auto", model=None,
                 size=None, channels: int | None = None) -> SampleSet:
    """`n` images from a run folder (data/val_images.npz), an .npz file, or a folder of PNG/JPG images.

    select: "balanced" (half correct, half misclassified, topped up from the other group; random when the
    outcomes are unknown), "random",
    "correct", "misclassified", "first", or "all". Outcomes come from `predictions` ("auto": the run's
    predictions/val_predictions.csv; a path; a DataFrame; None) or else, when `model` is given, from the
    model's own predictions. Random choices are seeded.
    """
    if select not in SELECTIONS:
        raise MlvizError(f"select must be one of {', '.join(SELECTIONS)}, got '{select}'")
    if n < 1:
        raise MlvizError("n must be at least 1")
    p = Path(path)
    if not p.exists():
        raise MlvizError(f"no such file or folder: {p}")
    npz = p if p.is_file() and p.suffix == ".npz" else next(
        (c for c in (p / "data/val_images.npz", p / "val_images.npz") if p.is_dir() and c.exists()), None)
    notes: list[str] = []
    if npz is not None:
        arrays = _npz_arrays(npz)
        source = str(npz)
    elif p.is_dir():
        arrays = _read_image_folder(p, size=size, channels=channels)
        notes += arrays.pop("notes")
        source = str(p)
    else:
        raise MlvizError(f"{p.name} is neither an .npz of images nor a folder of images")
    images = np.asarray(arrays["images"], dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    total = len(images)
    sample_ids = np.asarray(arrays.get("sample_ids", np.arange(total)))
    labels = arrays.get("labels")
    class_names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
    head_names = [str(h) for h in arrays["head_names"]] if "head_names" in arrays else None

    frame = predictions
    contract = None
    if isinstance(predictions, str) and predictions == "auto":
        found = _predictions_for(npz if npz is not None else p)
        frame = None
        if found is not None:
            frame = pd.read_csv(found)
            if (found.parent / "contract.json").exists():
                with contextlib.suppress(OSError, ValueError):
                    contract = json.loads((found.parent / "contract.json").read_text())
    elif isinstance(predictions, (str, Path)):
        try:
            frame = pd.read_csv(predictions)
        except (OSError, ValueError) as exc:
            raise MlvizError(f"cannot read predictions {predictions}: {one_line(exc)}") from None
    pred = None
    if isinstance(frame, pd.DataFrame):
        aligned = _align_predictions(frame, total, sample_ids)
        cols = _pred_columns(frame, head_names, contract) if aligned is not None else None
        if aligned is not None and cols and aligned[cols].notna().all().all():
            pred = aligned[cols].to_numpy().astype(np.int64)
        else:
            notes.append("the predictions file could not be matched to the images; outcomes from the model")
    elif isinstance(predictions, np.ndarray):
        pred = predictions.reshape(total, -1).astype(np.int64)
    if pred is None and model is not None and select in ("balanced", "correct", "misclassified"):
        pred = _model_predictions(model, images)
        notes.append("outcomes from the model's own predictions")
    correct = None
    if pred is not None and labels is not None:
        lab = np.asarray(labels).reshape(total, -1)
        if lab.shape == pred.shape:
            correct = (lab == pred).all(axis=1)
    rng = np.random.default_rng(seed)
    if select == "balanced" and correct is None:
        notes.append("no labels or predictions to tell correct from misclassified: images chosen at random")
        select = "random"
    if select in ("correct", "misclassified") and correct is None:
        raise MlvizError(f"select='{select}' needs labels and predictions (a predictions file, or the model); "
                         "use select='random'")
    if select == "all":
        idx = np.arange(total)
    elif select == "first":
        idx = np.arange(min(n, total))
    elif select == "random":
        idx = np.sort(rng.choice(total, size=min(n, total), replace=False))
    else:
        right, wrong = rng.permutation(np.flatnonzero(correct)), rng.permutation(np.flatnonzero(~correct))
        if select == "correct":
            idx = right[:n]
        elif select == "misclassified":
            idx = wrong[:n]
            if len(wrong) == 0:
                notes.append("no misclassified image")
        else:
            k = min(len(wrong), n // 2)
            idx = np.concatenate([right[:n - k], wrong[:k]])
            if len(idx) < n:
                idx = np.concatenate([idx, wrong[k:k + n - len(idx)]])
        if len(idx) == 0:
            raise MlvizError(f"no {'correctly classified' if select == 'correct' else 'misclassified'} image "
                             f"among the {total}")
    idx = np.asarray(idx, dtype=np.int64)
    return SampleSet(images=images[idx], sample_ids=sample_ids[idx], indices=idx,
                     labels=None if labels is None else np.asarray(labels)[idx],
                     predicted=None if pred is None else pred[idx],
                     correct=None if correct is None else correct[idx], class_names=class_names,
                     head_names=head_names, source=source, selection=select, notes=notes)


def load_run(run_dir, *, n: int = 8, select: str = "balanced", seed: int = 0, device: str = "cpu",
             images=None, factory: str | None = None, config: dict | None = None) -> tuple[LoadedModel, SampleSet]:
    """The model and `n` sample images of a run's downloaded artifact folder (images from `images`, a
    folder/.npz, when given; `factory`/`config` for a state dict logged without model_config.json)."""
    loaded = load_model(run_dir, device=device, factory=factory, config=config)
    samples = load_samples(images if images is not None else run_dir, n=n, select=select, seed=seed,
                           model=loaded.model)
    return loaded, samples
