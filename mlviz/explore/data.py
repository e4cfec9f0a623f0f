"""The explorer's inputs as one validated table: 2-D coordinates, metadata rows paired with them, and the
parsed prediction, score and rationale of an optional reviewer (seed 003's LLM `mis_*.csv`/`correct_*.csv`).

Two layouts are read:

- a cache folder (seed 003): `metadata.csv`, a coordinates `.npy` (e.g. `vis_umap_coords.npy`), optional
  `mis_*.csv` / `correct_*.csv` whose JSON `rationale` column holds `prediction`, `score` and `rationale`;
- a run's embedding files (`mlviz embed`): `embedding_coords.npy` + `embedding_metadata.csv`, downloaded by
  the command, with the run's `data/val_images.npz` as the images.

Also here: `resolve_image_path`, the only way a requested image name becomes a file, so that the image
route cannot be talked into serving anything outside the folder the user named.

Pure numpy/pandas: no drawing, no web framework, no MLflow.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd

from mlviz.errors import MlvizError
from mlviz.files import load_array

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
IMAGE_NAME_COLUMNS = ("file_name", "filename", "image_path", "image_file", "file_path", "path", "image")
JOIN_COLUMNS = ("file_name", "sample_id", "filename", "image_path", "image", "id", "index")
LLM_COLUMNS = ("llm_prediction", "llm_score", "llm_rationale", "llm_file")
DEFAULT_HOVER = ("file_name", "ground_truth_word_label", "ground_truth_num_label",  # seed 003
                 "sample_id", "label", "prediction", "confidence", "correct")  # mlviz embed
DEFAULT_COLOR = ("ground_truth_word_label", "label", "ground_truth_num_label", "prediction")
RUN_COORDS = "mlviz/embedding/embedding_coords.npy"
RUN_METADATA = "mlviz/embedding/embedding_metadata.csv"
RUN_IMAGES = "data/val_images.npz"
_MAX_DECODE = 4
_DRIVE = re.compile(r"^[A-Za-z]:")
_FENCE = re.compile(r"^```[A-Za-z]*\s*|\s*```$")


@dataclass
class ExploreTable:
    """n points: `coords` (n, 2) float64 and `metadata` (n rows, index 0..n-1, the reviewer's `llm_*` columns
    added where given). `image_column` names the column of image file names (relative to an image folder),
    `image_index_column` the column of rows into an images array; `notes` say what was dropped or guessed."""

    coords: np.ndarray
    metadata: pd.DataFrame
    source: str
    image_column: str | None = None
    image_index_column: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.coords)

    @property
    def has_rationale(self) -> bool:
        return "llm_rationale" in self.metadata.columns

    def default_color_by(self) -> str | None:
        return next((c for c in DEFAULT_COLOR if c in self.metadata.columns), None)

    def default_hover(self) -> list[str]:
        found = [c for c in DEFAULT_HOVER if c in self.metadata.columns]
        return found or [c for c in self.metadata.columns if c not in LLM_COLUMNS][:3]

    def choose_columns(self, color_by: str | None, hover: str | list[str] | None) -> tuple[str | None, list[str]]:
        """The colour-by column and hover columns, checked against the metadata (None/empty: defaults)."""
        cols = list(self.metadata.columns)
        listing = ", ".join(cols[:30]) + (" ..." if len(cols) > 30 else "")
        if isinstance(hover, str):
            hover = [h.strip() for h in hover.split(",") if h.strip()]
        hover = list(hover) if hover else self.default_hover()
        for h in hover:
            if h not in cols:
                raise MlvizError(f"--hover column '{h}' is not in the metadata (columns: {listing})")
        if color_by and color_by not in cols:
            raise MlvizError(f"--color-by column '{color_by}' is not in the metadata (columns: {listing})")
        return (color_by or self.default_color_by()), hover


# --------------------------------------------------------------------------- reading files


def read_coords(path: Path) -> np.ndarray:
    """(n, 2) float64 from a `.npy`; refuses pickles, non-numeric, empty, non-finite and wrongly shaped arrays."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic[:2] == b"PK":
            raise MlvizError(f"{path.name} is an .npz archive; pass the .npy of (n, 2) coordinates")
        if magic != b"\x93NUMPY":
            raise MlvizError(f"cannot read {path.name}: not a NumPy .npy file")
    arr = load_array(path, "coordinates")
    if arr.dtype.kind not in "biuf":
        raise MlvizError(f"{path.name} is not numeric (dtype {arr.dtype}); expected (n, 2) numbers")
    if arr.size == 0:
        raise MlvizError(f"{path.name} is empty (shape {arr.shape})")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise MlvizError(f"{path.name} has shape {arr.shape}; expected (n, 2) coordinates")
    arr = arr.astype(np.float64)
    bad = int((~np.isfinite(arr)).any(axis=1).sum())
    if bad:
        raise MlvizError(f"{path.name} has {bad} point(s) with NaN or infinite coordinates")
    return arr


def read_table(path: Path, what: str = "metadata") -> pd.DataFrame:
    """A CSV as strings where it helps (ids stay as written), with a one-line error for every way it fails."""
    path = Path(path)
    if not path.is_file():
        raise MlvizError(f"no {what} file {path}")
    try:
        frame = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise MlvizError(f"{path.name} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise MlvizError(f"cannot read {path.name}: {str(exc).strip().splitlines()[0]}") from None
    if frame.empty:
        raise MlvizError(f"{path.name} has no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise MlvizError(f"{path.name} has duplicate columns: {', '.join(dupes)}")
    return frame


def pair(coords: np.ndarray, metadata: pd.DataFrame, coords_name: str, metadata_name: str) -> None:
    if len(coords) != len(metadata):
        raise MlvizError(
            f"{coords_name} has {len(coords)} points but {metadata_name} has {len(metadata)} rows; "
            "they must pair row by row"
        )


# --------------------------------------------------------------------------- the reviewer's rationale


def parse_rationale(text) -> dict:
    """{prediction, score, rationale, parsed} from a JSON `rationale` cell (code fences allowed); text that is
    not a JSON object is kept whole as the rationale, so nothing the reviewer wrote is lost."""
    out = {"prediction": None, "score": None, "rationale": None, "parsed": False}
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return out
    raw = str(text).strip()
    try:
        obj = json.loads(_FENCE.sub("", raw))
    except (json.JSONDecodeError, ValueError):
        obj = None
    if not isinstance(obj, dict):
        out["rationale"] = raw
        return out
    low = {str(k).strip().lower(): v for k, v in obj.items()}

    def pick(*names):
        return next((low[n] for n in names if n in low), None)

    out["prediction"] = pick("prediction", "verdict", "label", "classification")
    out["score"] = pick("score", "llm_score", "confidence")
    rationale = pick("rationale", "reason", "reasoning", "explanation")
    out["rationale"] = rationale if rationale is None or isinstance(rationale, str) else json.dumps(rationale)
    out["parsed"] = True
    return out


def attach_rationales(metadata: pd.DataFrame, reviews: dict[str, pd.DataFrame], notes: list[str]) -> pd.DataFrame:
    """Add `llm_prediction`, `llm_score`, `llm_rationale` and `llm_file` (which CSV said it) to the metadata,
    pairing rows by the first column both share (`file_name`, `sample_id`, ...)."""
    metadata = metadata.copy()
    for col in LLM_COLUMNS:
        metadata[col] = pd.Series([None] * len(metadata), index=metadata.index, dtype=object)
    for name, frame in reviews.items():
        if "rationale" not in frame.columns:
            raise MlvizError(f"{name} has no 'rationale' column (columns: {', '.join(map(str, frame.columns))})")
        key = next((c for c in JOIN_COLUMNS if c in frame.columns and c in metadata.columns), None)
        if key is None:
            raise MlvizError(f"{name} shares no column with the metadata to pair its rows "
                             f"(looked for {', '.join(JOIN_COLUMNS)})")
        where = {str(v): i for i, v in zip(metadata.index, metadata[key], strict=True)}
        unmatched, unparsed = 0, 0
        for value, cell in zip(frame[key], frame["rationale"], strict=True):
            row = where.get(str(value))
            if row is None:
                unmatched += 1
                continue
            parsed = parse_rationale(cell)
            unparsed += not parsed["parsed"] and parsed["rationale"] is not None
            metadata.at[row, "llm_prediction"] = parsed["prediction"]
            metadata.at[row, "llm_score"] = parsed["score"]
            metadata.at[row, "llm_rationale"] = parsed["rationale"]
            metadata.at[row, "llm_file"] = name
        if unmatched:
            notes.append(f"{name}: {unmatched} of {len(frame)} rows match no sample by '{key}' and are not shown")
        if unparsed:
            notes.append(f"{name}: {unparsed} rationale(s) are not JSON objects; shown as written")
    return metadata


def _find_one(folder: Path, pattern: str, what: str) -> Path | None:
    found = sorted(folder.glob(pattern))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise MlvizError(f"several {what} files in {folder} ({names}); name one with --{what}")
    return found[0] if found else None


def _optional_csv(folder: Path, given: str | None, pattern: str, option: str) -> Path | None:
    if given:
        path = Path(given) if Path(given).is_absolute() else folder / given
        if not path.is_file():
            raise MlvizError(f"--{option} {given}: no such file in {folder}")
        return path
    return _find_one(folder, pattern, option)


def load_cache_dir(cache_dir, coords_file: str | None = None, metadata_file: str | None = None,
                   mis_csv: str | None = None, correct_csv: str | None = None) -> ExploreTable:
    """Seed 003's cache folder as an `ExploreTable`. File names are relative to the folder; the coordinates
    default to its one `*coords*.npy` (or its one `.npy`), the reviews to its `mis_*.csv` / `correct_*.csv`."""
    folder = Path(cache_dir).expanduser()
    if not folder.is_dir():
        raise MlvizError(f"--cache-dir {cache_dir}: no such folder")
    if coords_file:
        coords_path = Path(coords_file) if Path(coords_file).is_absolute() else folder / coords_file
    else:
        coords_path = _find_one(folder, "*coords*.npy", "coords-file") or _find_one(folder, "*.npy", "coords-file")
        if coords_path is None:
            raise MlvizError(f"no coordinates .npy in {folder}; name it with --coords-file")
    meta_path = folder / (metadata_file or "metadata.csv")
    if metadata_file and Path(metadata_file).is_absolute():
        meta_path = Path(metadata_file)
    coords = read_coords(coords_path)
    metadata = read_table(meta_path)
    pair(coords, metadata, coords_path.name, meta_path.name)
    reviews = {}
    for given, pattern, option in ((mis_csv, "mis_*.csv", "mis-csv"), (correct_csv, "correct_*.csv", "correct-csv")):
        path = _optional_csv(folder, given, pattern, option)
        if path is not None:
            reviews[path.name] = read_table(path, "review")
    return _table(coords, metadata, reviews, source=f"{folder} ({coords_path.name} + {meta_path.name})")


def load_embedding_files(coords_path, metadata_path, reviews: dict[str, Path] | None = None,
                         source: str = "") -> ExploreTable:
    """A run's `embedding_coords.npy` + `embedding_metadata.csv` (already downloaded) as an `ExploreTable`."""
    coords_path, metadata_path = Path(coords_path), Path(metadata_path)
    coords = read_coords(coords_path)
    metadata = read_table(metadata_path)
    pair(coords, metadata, coords_path.name, metadata_path.name)
    frames = {Path(p).name: read_table(Path(p), "review") for p in (reviews or {}).values()}
    return _table(coords, metadata, frames, source=source or f"{coords_path.name} + {metadata_path.name}")


def _table(coords: np.ndarray, metadata: pd.DataFrame, reviews: dict[str, pd.DataFrame], source: str) -> ExploreTable:
    notes: list[str] = []
    metadata = metadata.reset_index(drop=True)
    if reviews:
        metadata = attach_rationales(metadata, reviews, notes)
    image_column = next((c for c in IMAGE_NAME_COLUMNS if c in metadata.columns), None)
    index_column = "image_index" if "image_index" in metadata.columns else None
    return ExploreTable(coords, metadata, source, image_column, index_column, notes)


# --------------------------------------------------------------------------- images


def resolve_image_path(root, name) -> Path | None:
    """The image file `name` names inside `root`, or None when it is not one.

    None for: anything but a relative path of plain components (`..`, absolute paths, `~`, drive letters,
    backslashes, NUL and control characters), in the name as given or after any number of percent-decodings
    (`%2e%2e%2f`, `%252e%252e%252f`); a path whose real location (symlinks followed) is outside `root`; a
    missing file; a file that is not an image by its suffix. The file is looked up by the name as given
    (the web server has already decoded the URL once)."""
    if not isinstance(name, str) or not name or len(name) > 1024:
        return None
    forms = [name]
    for _ in range(_MAX_DECODE):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    else:
        return None  # still changing after several decodings: nobody names a file like that
    for form in forms:
        if any(ord(ch) < 32 or ch == "\x7f" for ch in form) or "\\" in form:
            return None
        if form.startswith(("/", "~")) or _DRIVE.match(form):
            return None
        if any(part in ("..", ".") for part in form.split("/")):
            return None
    try:
        base = Path(root).resolve(strict=True)
        real = base.joinpath(*[p for p in name.split("/") if p]).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if real == base or not real.is_relative_to(base) or not real.is_file():
        return None
    if real.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return real


@dataclass
class ImageArrays:
    """A run's images (`data/val_images.npz`): `images` (n, C, H, W) and, per table row, the row in it (-1: none)."""

    images: np.ndarray
    row_of_point: np.ndarray
    class_names: list[str] | None = None

    def image_for(self, point: int) -> np.ndarray | None:
        i = int(self.row_of_point[point]) if 0 <= point < len(self.row_of_point) else -1
        return to_uint8_image(self.images[i]) if i >= 0 else None


def read_image_arrays(path, table: ExploreTable) -> ImageArrays:
    """Pair each point with a row of the npz: by `image_index`, else by `sample_id`, else row by row when the
    counts agree. Points that pair with nothing show no image (and a note says how many)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MlvizError(f"cannot read {path.name}: {str(exc).splitlines()[0]}") from None
    images = arrays.get("images")
    if images is None or images.ndim not in (3, 4) or images.dtype.kind not in "biuf" or not len(images):
        raise MlvizError(f"{path.name} has no (n, C, H, W) numeric 'images' array")
    meta = table.metadata
    rows = np.full(table.n, -1, dtype=np.int64)
    if table.image_index_column:
        idx = pd.to_numeric(meta[table.image_index_column], errors="coerce").to_numpy()
        ok = np.isfinite(idx) & (idx >= 0) & (idx < len(images))
        rows[ok] = idx[ok].astype(np.int64)
    elif "sample_id" in meta.columns and "sample_ids" in arrays:
        where = {str(s): i for i, s in enumerate(arrays["sample_ids"])}
        rows = np.array([where.get(str(s), -1) for s in meta["sample_id"]], dtype=np.int64)
    elif len(images) == table.n:
        rows = np.arange(table.n)
    missing = int((rows < 0).sum())
    if missing:
        table.notes.append(f"{missing} of {table.n} points have no image in {path.name}")
    names = arrays.get("class_names")
    return ImageArrays(images, rows, [str(c) for c in names] if names is not None else None)


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 for display: channels-first arrays moved last, floats in [0, 1] scaled,
    any other range stretched to its own min..max."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3:
        a = a[..., 0] if a.shape[-1] in (1, 2) or a.shape[-1] > 4 else a[..., :3]
    if a.dtype == np.uint8:
        return a
    a = np.nan_to_num(a.astype(np.float64))
    lo, hi = float(a.min()), float(a.max())
    if not (lo >= 0.0 and hi <= 1.0):
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.clip(np.round(a * 255), 0, 255).astype(np.uint8)
