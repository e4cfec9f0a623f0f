"""The predictions contract: one model's predictions as a typed, validated object.

A predictions table (CSV/Parquet, one row per sample, or per sample and epoch) becomes a `Predictions`:

- `task`: "binary", "multiclass", "multioutput" or "regression";
- `y_true`: (n,) class codes 0..k-1 (binary: 0/1), (n, heads) for multi-output, floats for regression;
- `scores`: binary (n,) score of the positive class; multi-class (n, k) probabilities;
  multi-output (n, heads, k) probabilities (a head with fewer classes is padded with zeros);
  regression (n,) predicted values;
- `metadata`: everything else a figure may use (sample id, image index or path, grouping columns, epoch);
- `group_column`: the column whose rows are not independent (several rows per patient, subject, video):
  bootstrap intervals then resample whole groups (see `detect_group_column`).

`predictions_from_frame` reads a DataFrame through a `ColumnMap`. Without one it detects:

- the demo's contract (`mlviz.demo.sweep.contract`) when given;
- `label` (or `y_true`, `target`, `true`, `labels`) with `score`/`prob`/`probabilities`/`y_pred_proba`/...
  (binary; `pred`/`y_pred`/... too when it holds probabilities), or else the one numeric column left that
  lies in [0, 1] (a note says so); one `prob_<class>` column
  (binary, that class positive; e.g. `label` + `prob_header`), or several `prob_<class>` columns (multi-class);
- `label_<head>` with `prob_<head>_<class>` (or one `prob_<head>` column: a binary head) for multi-output;
- `y_true`/`y_pred`, `true`/`predicted` or `target`/`prediction` for regression.

Probabilities are checked, never repaired: values outside [0, 1], rows of a multi-class head that do not
sum to 1 (tolerance 1e-3) and missing values are each a `MlvizError` naming the column and rows. A binary
`score` column outside [0, 1] is taken as a raw score (ROC/PR still apply; calibration does not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from mlviz.errors import MlvizError

TASKS = ("binary", "multiclass", "multioutput", "regression")
SUM_TOLERANCE = 1e-3

LABEL_NAMES = ("label", "y_true", "target", "true", "labels", "y")
SINGLE_SCORE_NAMES = ("score", "prob", "proba", "probability", "probabilities", "y_score", "y_prob", "y_proba",
                      "y_pred_proba", "y_pred_prob", "pred_proba", "pred_prob", "predicted_proba",
                      "predicted_probability", "prediction_probability", "positive_probability", "scores",
                      "logit", "logits", "decision_function")
# Names people give a prediction column: its values are the score only when they are probabilities (in [0, 1],
# not all 0/1) of a two-class label; hard 0/1 predictions and regression values are not.
PRED_NAMES = ("pred", "preds", "prediction", "predictions", "predicted", "y_pred", "y_hat", "output", "outputs")
PROB_PREFIXES = ("prob_", "proba_", "probability_")
REGRESSION_PAIRS = (("y_true", "y_pred"), ("true", "predicted"), ("target", "prediction"), ("y", "y_hat"))
ID_NAMES = ("sample_id", "id", "sample", "uid", "sample_name")
IMAGE_INDEX_NAMES = ("image_index", "image_idx", "img_index", "image_id_index")
IMAGE_PATH_NAMES = ("image_path", "filepath", "file_path", "path", "image_file", "filename")
NON_GROUP_PREFIXES = ("pred", "prob", "score", "label", "logit", "y_", "p_")
MAX_GROUP_VALUES = 30
# Columns that name the unit rows belong to (several rows per patient, subject, video, ...): a repeat in one
# of them makes the bootstrap resample whole groups. Matched case-insensitively, with or without "_id"; the
# words that also name slices (a `group` or `case` column) only with an id suffix (`group_id`, `case_id`).
CLUSTER_NAMES = ("patient", "subject", "participant", "video", "person", "slide", "clip", "animal", "donor",
                 "individual", "recording")
CLUSTER_ID_NAMES = ("case", "group", "study", "session", "cluster")
_ID_SUFFIX = r"[ _-]?(?:id|ids|no|number|code|key)"
CLUSTER_RE = re.compile(rf"^(?:(?:{'|'.join(CLUSTER_NAMES)})(?:{_ID_SUFFIX})?|(?:{'|'.join(CLUSTER_ID_NAMES)}){_ID_SUFFIX})$",
                        re.IGNORECASE)
NO_GROUPING = ("none", "no", "off", "false", "rows", "samples")


@dataclass
class ColumnMap:
    """How to read a predictions table. Every field is optional; what is left out is detected.

    - `label`, `scores`: the label column and the score columns (binary: one column, the positive class's
      score, or two probability columns; multi-class: one probability column per class, in class order);
    - `score_prefix`: instead of `scores`, every column starting with this prefix (class = the rest);
    - `heads`: multi-output, {head: {"label": column, "scores": [columns]}} (or {"label":, "prefix":});
    - `prediction`: regression, the predicted-value column (with `label` the true value);
    - `class_names`, `positive_class`: names of the classes; which label value is positive (binary);
    - `rename`: columns renamed before anything else, e.g. {"prob_header": "score"};
    - `probabilities`: whether a binary score is a probability (None: when it lies in [0, 1]);
    - `group_column` (keys `group`, `group_id`): rows of one value are not independent (a patient, a
      video): intervals resample whole groups; "none" resamples rows and turns detection off.
    """

    task: str | None = None
    label: str | None = None
    scores: list[str] | None = None
    score_prefix: str | None = None
    heads: dict[str, dict] | None = None
    prediction: str | None = None
    class_names: list[str] | None = None
    positive_class: str | None = None
    id_column: str | None = None
    image_column: str | None = None
    image_path_column: str | None = None
    group_columns: list[str] | None = None
    group_column: str | None = None  # bootstrap by groups of this column; "none": rows, no detection
    epoch_column: str = "epoch"
    rename: dict[str, str] = field(default_factory=dict)
    probabilities: bool | None = None

    @classmethod
    def from_dict(cls, data: dict) -> ColumnMap:
        """From a plain dict; also reads the demo's contract keys (`classes`, `scores`, `heads`)."""
        known = {f.name for f in fields(cls)}
        kw = {}
        for key, value in data.items():
            key = {"classes": "class_names", "groups": "group_columns", "prefix": "score_prefix",
                   "id": "id_column", "image": "image_column", "image_path": "image_path_column",
                   "epoch": "epoch_column", "group": "group_column", "group_id": "group_column",
                   "cluster": "group_column"}.get(key, key)
            if key in known:
                kw[key] = value
            elif key not in ("images",):  # the contract's image file is for the loader, not the table
                raise MlvizError(f"unknown column-map key '{key}' (known: {', '.join(sorted(known))})")
        for key in ("scores", "group_columns"):
            if isinstance(kw.get(key), str):
                kw[key] = [kw[key]]
        if kw.get("task") is not None and kw["task"] not in TASKS:
            raise MlvizError(f"column map: task must be one of {', '.join(TASKS)}, not '{kw['task']}'")
        return cls(**kw)

    @classmethod
    def parse(cls, text: str) -> ColumnMap:
        """From a command-line string: `label=y,scores=p_neg|p_pos,groups=site|scanner,rename=prob_header:score`."""
        data: dict = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "=" not in part:
                raise MlvizError(f"column map: '{part}' is not KEY=VALUE (e.g. label=y,scores=prob_a|prob_b)")
            key, value = (s.strip() for s in part.split("=", 1))
            if key in ("scores", "class_names", "classes", "group_columns", "groups"):
                data[key] = [v for v in value.split("|") if v]
            elif key == "rename":
                pairs = [p.split(":", 1) for p in value.split("|") if p]
                if any(len(p) != 2 for p in pairs):
                    raise MlvizError("column map: rename takes OLD:NEW pairs separated by |")
                data["rename"] = dict(pairs)
            elif key == "probabilities":
                data[key] = value.lower() in ("1", "true", "yes")
            else:
                data[key] = value
        return cls.from_dict(data)


@dataclass
class HeadView:
    """One output of a model, as the analyses see it."""

    name: str  # "" for a single-output model
    kind: str  # "binary", "multiclass" or "regression"
    y: np.ndarray  # (n,) codes (binary: 0/1) or values
    scores: np.ndarray  # binary (n,) positive-class score; multiclass (n, k); regression (n,)
    class_names: list[str]
    probabilities: bool = True


@dataclass
class Predictions:
    task: str
    y_true: np.ndarray
    scores: np.ndarray
    class_names: list[str]
    head_names: list[str] = field(default_factory=list)
    metadata: pd.DataFrame = field(default_factory=pd.DataFrame)
    probabilities: bool = True
    head_classes: list[list[str]] | None = None  # multi-output: class names per head
    id_column: str | None = None
    image_column: str | None = None
    image_path_column: str | None = None
    group_columns: list[str] = field(default_factory=list)
    epoch_column: str | None = None
    group_column: str | None = None  # bootstrap unit: whole groups of this column (None: rows)
    source: dict = field(default_factory=dict)  # which columns were read, for the record
    notes: list[str] = field(default_factory=list)  # what was guessed (e.g. the score column), for the user

    def __post_init__(self):
        if self.task not in TASKS:
            raise MlvizError(f"task must be one of {', '.join(TASKS)}, not '{self.task}'")
        n = len(self.y_true)
        if len(self.scores) != n:
            raise MlvizError(f"predictions: {n} labels but {len(self.scores)} scores; they must be the same length")
        if len(self.metadata) and len(self.metadata) != n:
            raise MlvizError(f"predictions: {n} labels but {len(self.metadata)} metadata rows")
        if not len(self.metadata):
            self.metadata = pd.DataFrame(index=pd.RangeIndex(n))

    @property
    def n(self) -> int:
        return len(self.y_true)

    @property
    def has_epochs(self) -> bool:
        return self.epoch_column is not None and self.epoch_column in self.metadata.columns

    def epochs(self) -> list:
        return sorted(pd.unique(self.metadata[self.epoch_column]).tolist()) if self.has_epochs else []

    def subset(self, mask) -> Predictions:
        mask = np.asarray(mask)
        return replace(self, y_true=self.y_true[mask], scores=self.scores[mask],
                       metadata=self.metadata.iloc[mask].reset_index(drop=True))

    def at_epoch(self, epoch) -> Predictions:
        return self.subset(self.metadata[self.epoch_column].to_numpy() == epoch)

    @property
    def groups(self) -> np.ndarray | None:
        """Group code 0..G-1 of each row (in sorted order of the group values) when the bootstrap resamples
        whole groups, else None. Codes are dense within these rows: a subset gets its own."""
        if not self.group_column or self.group_column not in self.metadata:
            return None
        return dense_codes(self.metadata[self.group_column])

    @property
    def n_groups(self) -> int | None:
        codes = self.groups
        return None if codes is None else int(codes.max()) + 1 if len(codes) else 0

    @property
    def sample_ids(self) -> np.ndarray:
        if self.id_column and self.id_column in self.metadata:
            return self.metadata[self.id_column].to_numpy()
        return np.arange(self.n)

    def image_indices(self, n_images: int | None = None) -> np.ndarray | None:
        """Index of each row's image in an image array: the image column, else the row when sizes agree."""
        if self.image_column and self.image_column in self.metadata:
            return self.metadata[self.image_column].to_numpy()
        if n_images is not None and n_images == self.n:
            return np.arange(self.n)
        return None

    def heads(self) -> list[HeadView]:
        if self.task == "regression":
            return [HeadView("", "regression", self.y_true.astype(float), self.scores.astype(float), [], False)]
        if self.task in ("binary", "multiclass"):
            return [HeadView("", self.task, self.y_true, self.scores, self.class_names,
                             self.probabilities or self.task == "multiclass")]
        out = []
        for h, name in enumerate(self.head_names):
            classes = self.head_classes[h] if self.head_classes else self.class_names
            probs = self.scores[:, h, :len(classes)]
            binary = len(classes) == 2
            out.append(HeadView(name, "binary" if binary else "multiclass", self.y_true[:, h],
                                probs[:, 1] if binary else probs, classes, True))
        return out


def dense_codes(values) -> np.ndarray:
    """0..G-1 per row in sorted order of the values (as strings); each missing value is a group of its own,
    after the others. Two tables holding the same group values get the same codes."""
    s = pd.Series(values).reset_index(drop=True)
    missing = s.isna().to_numpy()
    codes = np.zeros(len(s), dtype=np.int64)
    names, codes[~missing] = np.unique(s[~missing].astype(str).to_numpy(), return_inverse=True)
    codes[missing] = len(names) + np.arange(int(missing.sum()))
    return codes


# --------------------------------------------------------------------------- validation helpers
def _rows(mask: np.ndarray, limit: int = 5) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:limit])
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def _numeric(df: pd.DataFrame, col: str, what: str) -> np.ndarray:
    try:
        values = pd.to_numeric(df[col], errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        bad = df[col][pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()]
        raise MlvizError(f"{what} column '{col}' is not numeric (e.g. {bad.iloc[0]!r} in row {bad.index[0]})") from None
    missing = ~np.isfinite(values)
    if missing.any():
        raise MlvizError(f"{what} column '{col}' has {int(missing.sum())} missing or infinite values "
                         f"(rows {_rows(missing)}); drop or fix those rows")
    return values


def _check_probabilities(values: np.ndarray, cols: list[str]) -> None:
    for j, col in enumerate(cols):
        v = values[:, j] if values.ndim == 2 else values
        bad = (v < 0) | (v > 1)
        if bad.any():
            raise MlvizError(f"probability column '{col}' has {int(bad.sum())} values outside [0, 1] "
                             f"(rows {_rows(bad)}; range {v.min():.4g} to {v.max():.4g}); "
                             "pass probabilities (e.g. softmax/sigmoid outputs), not logits")


def _check_sums(values: np.ndarray, cols: list[str]) -> None:
    sums = values.sum(axis=1)
    bad = np.abs(sums - 1.0) > SUM_TOLERANCE
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MlvizError(f"probability columns {cols[0]}..{cols[-1]} must sum to 1 in every row (tolerance "
                         f"{SUM_TOLERANCE:g}); {int(bad.sum())} rows do not (rows {_rows(bad)}; row {first} sums to "
                         f"{sums[first]:.6g}); mlviz does not renormalise: export normalised probabilities")


def _encode_labels(raw: pd.Series, classes: list[str] | None, col: str, positive: str | None = None,
                   binary: bool = False) -> tuple[np.ndarray, list[str]]:
    """Label values → codes 0..k-1 and the class names."""
    if raw.isna().any():
        miss = raw.isna().to_numpy()
        raise MlvizError(f"label column '{col}' has {int(miss.sum())} missing values (rows {_rows(miss)})")
    if raw.dtype == bool:
        raw = raw.astype(int)
    uniq = pd.unique(raw.to_numpy())
    numeric = pd.to_numeric(raw, errors="coerce")
    codes = numeric.notna().all() and (numeric % 1 == 0).all() and numeric.min() >= 0  # already 0..k-1
    if binary:
        if numeric.notna().all() and set(numeric.unique().tolist()) <= {0, 1}:
            names = list(classes) if classes and len(classes) == 2 else ["0", "1"]
            return numeric.to_numpy().astype(int), names
        svals = raw.astype(str)
        if classes and len(classes) == 2 and set(svals.unique()) <= set(classes):
            return (svals == classes[1]).to_numpy().astype(int), list(classes)
        if positive is not None and positive in set(svals.unique()):
            others = sorted(set(svals.unique()) - {positive})
            if len(others) <= 1:
                neg = others[0] if others else f"not {positive}"
                return (svals == positive).to_numpy().astype(int), [neg, positive]
        raise MlvizError(f"label column '{col}' of a binary task holds {sorted(map(str, uniq))[:6]}: use 0/1 labels, "
                         "or name the classes (class_names=[negative, positive]) or the positive_class in the column map")
    # multi-class
    svals = raw.astype(str).str.replace(r"\.0$", "", regex=True)
    if classes is not None:
        if set(svals.unique()) <= set(classes):
            return svals.map({c: i for i, c in enumerate(classes)}).to_numpy().astype(int), list(classes)
        if codes and numeric.max() < len(classes):
            return numeric.to_numpy().astype(int), list(classes)
        extra = sorted(set(svals.unique()) - set(classes))[:6]
        raise MlvizError(f"label column '{col}' holds values {extra} that are not among the classes "
                         f"{list(classes)[:12]} (named by the score columns)")
    if codes:
        return numeric.to_numpy().astype(int), [str(i) for i in range(int(numeric.max()) + 1)]
    names = sorted(svals.unique())
    return svals.map({c: i for i, c in enumerate(names)}).to_numpy().astype(int), names


# --------------------------------------------------------------------------- layout detection
def _first(columns, names) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[name] for name in names if name in lower), None)


def _prefixed(columns, prefixes) -> tuple[str | None, list[str]]:
    for prefix in prefixes:
        cols = [c for c in columns if c.lower().startswith(prefix) and len(c) > len(prefix)]
        if cols:
            return prefix, cols
    return None, []


def _probability_like(s: pd.Series) -> bool:
    """Numeric, finite, within [0, 1] and not only 0/1: a probability, not a hard prediction or a count."""
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return bool(len(v) and np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all() and not np.isin(v, (0, 1)).all())


def _guess_score(df: pd.DataFrame, label: str, notes: list[str]) -> list[str] | None:
    """The score column of a two-class label when no known score name is there: a prediction column holding
    probabilities, else the one numeric column in [0, 1] left (ids, image indices and epochs aside)."""
    if df[label].nunique(dropna=True) > 2:
        return None
    cols = [c for c in df.columns if c != label]
    pred = next((c for c in cols if str(c).lower() in PRED_NAMES and _probability_like(df[c])), None)
    if pred is not None:
        notes.append(f"score column: '{pred}', which holds probabilities (pass --scores to choose another)")
        return [pred]
    skip = {str(n) for n in ID_NAMES + IMAGE_INDEX_NAMES + ("epoch", "step", "index")}
    left = [c for c in cols if str(c).lower() not in skip and pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c]) and _probability_like(df[c])]
    if len(left) == 1:
        notes.append(f"score column: '{left[0]}', the only numeric column in [0, 1] besides the label "
                     f"'{label}' (pass --scores to choose another)")
        return left
    if len(left) > 1:
        raise MlvizError(f"found the label column '{label}' but several columns could be the score "
                         f"({_list(left)}); pass --scores NAME")
    return None


def _detect(df: pd.DataFrame, cmap: ColumnMap, notes: list[str] | None = None) -> ColumnMap:
    """Fill in what the map leaves out from the column names; `notes` collects what was guessed."""
    notes = [] if notes is None else notes
    cols = list(df.columns)
    if cmap.heads:
        return replace(cmap, task="multioutput")
    if cmap.task == "regression" or cmap.prediction:
        label = cmap.label or next((t for t, p in REGRESSION_PAIRS if t in cols and p in cols), None)
        pred = cmap.prediction or next((p for t, p in REGRESSION_PAIRS if t == label and p in cols), None)
        if label is None or pred is None:
            raise MlvizError("regression predictions need a true-value and a predicted-value column "
                             f"(y_true/y_pred, true/predicted, target/prediction); found: {_list(cols)}")
        return replace(cmap, task="regression", label=label, prediction=pred)
    label = cmap.label or _first(cols, LABEL_NAMES)
    if cmap.label and cmap.label not in cols:
        raise MlvizError(f"the label column '{cmap.label}' is not in the predictions (columns: {_list(cols)})")
    scores = cmap.scores
    if scores is None and cmap.score_prefix:
        scores = [c for c in cols if c.startswith(cmap.score_prefix)]
        if not scores:
            raise MlvizError(f"no column starts with '{cmap.score_prefix}' (columns: {_list(cols)})")
    if scores is None and label is not None:
        single = _first(cols, SINGLE_SCORE_NAMES)
        if single:
            scores = [single]
        else:
            _, scores = _prefixed([c for c in cols if c != label], PROB_PREFIXES)
            scores = scores or None
        if scores is None and cmap.task in (None, "binary"):
            scores = _guess_score(df, label, notes)
    if scores is None and cmap.task is None:
        pair = next(((t, p) for t, p in REGRESSION_PAIRS if t in cols and p in cols), None)
        if pair and label in (None, pair[0]):
            return replace(cmap, task="regression", label=pair[0], prediction=pair[1])
    if scores is not None and label is not None:
        task = cmap.task or ("binary" if len(scores) <= 2 else "multiclass")
        return replace(cmap, task=task, label=label, scores=list(scores))
    # multi-output: label_<head> columns
    head_labels = [c for c in cols if c.lower().startswith("label_")]
    if head_labels and label is None:
        heads = {c[len("label_"):]: {"label": c} for c in head_labels}
        score_cols = [c for c in cols if c.lower().startswith(PROB_PREFIXES + ("score_",))]
        for c in score_cols:  # longest head name that prefixes the column wins
            rest = c.split("_", 1)[1]
            match = max((h for h in heads if rest == h or rest.startswith(h + "_")), key=len, default=None)
            if match is not None:
                heads[match].setdefault("scores", []).append(c)
        missing = [h for h, d in heads.items() if not d.get("scores")]
        if missing:
            raise MlvizError(f"multi-output head(s) {missing} have a label column but no prob_<head>_<class> "
                             f"(or prob_<head>) score columns; columns: {_list(cols)}")
        return replace(cmap, task="multioutput", heads=heads)
    if label is None:
        raise MlvizError("the predictions have no label column (looked for "
                         f"{', '.join(LABEL_NAMES)}, label_<head>, or y_true/y_pred for regression); "
                         f"columns: {_list(cols)}; pass a column map naming it")
    raise MlvizError(f"found the label column '{label}' but no score columns (looked for score, prob, "
                     f"probabilities, y_pred_proba, prob_<class>, a column of probabilities); columns: {_list(cols)}; "
                     "pass --scores or a column map naming them")


def _list(cols, limit: int = 15) -> str:
    cols = [str(c) for c in cols]
    return ", ".join(cols[:limit]) + (f" (+{len(cols) - limit} more)" if len(cols) > limit else "")


def _class_from(col: str) -> str:
    return next((col[len(p):] for p in PROB_PREFIXES + ("score_",) if col.lower().startswith(p)), col)


def _strip_head(col: str, head: str) -> str:
    m = re.match(rf"^(?:{'|'.join(p.rstrip('_') for p in PROB_PREFIXES + ('score_',))})_{re.escape(head)}_?(.*)$",
                 col, flags=re.IGNORECASE)
    return m.group(1) if m else col


# --------------------------------------------------------------------------- readers per task
def _read_single(df: pd.DataFrame, cmap: ColumnMap) -> dict:
    label, scores = cmap.label, list(cmap.scores)
    missing = [c for c in [label, *scores] if c not in df.columns]
    if missing:
        raise MlvizError(f"column(s) {missing} named by the column map are not in the predictions "
                         f"(columns: {_list(df.columns)})")
    values = np.column_stack([_numeric(df, c, "score") for c in scores])
    if cmap.task == "binary" and len(scores) == 1:
        col = scores[0]
        s = values[:, 0]
        named_prob = "prob" in col.lower() or col.lower().startswith("p_")
        in_range = bool(((s >= 0) & (s <= 1)).all())
        probs = cmap.probabilities if cmap.probabilities is not None else (named_prob or in_range)
        if probs:
            _check_probabilities(s, [col])
        positive = cmap.positive_class
        if positive is not None:
            present = {str(v) for v in df[label].dropna().unique()} | \
                {str(int(v)) for v in pd.to_numeric(df[label], errors="coerce").dropna().unique() if float(v).is_integer()}
            if str(positive) not in present:
                raise MlvizError(f"the positive class '{positive}' is not among the labels of '{label}' "
                                 f"({', '.join(sorted(present)[:6])})")
        if positive is None and col.lower().startswith(PROB_PREFIXES):
            positive = _class_from(col)
        classes = cmap.class_names
        y, names = _encode_labels(df[label], classes, label, positive=positive, binary=True)
        if classes is None and positive is not None and names == ["0", "1"]:
            names = [f"not {positive}", positive]
        return {"task": "binary", "y_true": y, "scores": s, "class_names": names, "probabilities": bool(probs),
                "source": {"label": label, "scores": scores}}
    _check_probabilities(values, scores)
    _check_sums(values, scores)
    classes = cmap.class_names or [_class_from(c) for c in scores]
    if len(classes) != len(scores):
        raise MlvizError(f"column map names {len(classes)} classes but {len(scores)} score columns")
    y, names = _encode_labels(df[label], classes, label)
    binary = len(scores) == 2 and cmap.task != "multiclass"
    return {"task": "binary" if binary else "multiclass", "y_true": y,
            "scores": values[:, 1] if binary else values, "class_names": names, "probabilities": True,
            "source": {"label": label, "scores": scores}}


def _read_heads(df: pd.DataFrame, cmap: ColumnMap) -> dict:
    heads = cmap.heads
    names, ys, probs, head_classes, source = [], [], [], [], {}
    for head, spec in heads.items():
        label = spec.get("label")
        cols = spec.get("scores")
        if cols is None and spec.get("prefix"):
            cols = [c for c in df.columns if c.startswith(spec["prefix"])]
        if not label or label not in df.columns:
            raise MlvizError(f"head '{head}': label column '{label}' is not in the predictions (columns: {_list(df.columns)})")
        if not cols:
            raise MlvizError(f"head '{head}' has no score columns")
        absent = [c for c in cols if c not in df.columns]
        if absent:
            raise MlvizError(f"head '{head}': score column(s) {absent} are not in the predictions")
        values = np.column_stack([_numeric(df, c, "score") for c in cols])
        _check_probabilities(values, cols)
        if len(cols) == 1:
            values = np.column_stack([1.0 - values[:, 0], values[:, 0]])
            y, classes = _encode_labels(df[label], spec.get("classes") or cmap.class_names, label, binary=True)
        else:
            _check_sums(values, cols)
            classes = spec.get("classes") or cmap.class_names or [_strip_head(c, head) for c in cols]
            if len(classes) != len(cols):
                classes = [_strip_head(c, head) for c in cols]
            y, classes = _encode_labels(df[label], classes, label)
        names.append(str(head))
        ys.append(y)
        probs.append(values)
        head_classes.append(list(classes))
        source[str(head)] = {"label": label, "scores": list(cols)}
    k = max(p.shape[1] for p in probs)
    scores = np.zeros((len(df), len(names), k))
    for h, p in enumerate(probs):
        scores[:, h, :p.shape[1]] = p
    same = all(c == head_classes[0] for c in head_classes)
    return {"task": "multioutput", "y_true": np.column_stack(ys), "scores": scores,
            "class_names": head_classes[0] if same else [], "head_names": names,
            "head_classes": head_classes, "probabilities": True, "source": {"heads": source}}


def _read_regression(df: pd.DataFrame, cmap: ColumnMap) -> dict:
    for c in (cmap.label, cmap.prediction):
        if c not in df.columns:
            raise MlvizError(f"regression column '{c}' is not in the predictions (columns: {_list(df.columns)})")
    return {"task": "regression", "y_true": _numeric(df, cmap.label, "true-value"),
            "scores": _numeric(df, cmap.prediction, "prediction"), "class_names": [], "probabilities": False,
            "source": {"label": cmap.label, "prediction": cmap.prediction}}


MIN_GROUPS = 10  # fewer groups are not detected (a bootstrap over so few is rough); --group-id still uses them


def _repeats(df: pd.DataFrame, col: str, epoch_col: str | None) -> tuple[int, int, float]:
    """(rows, distinct values, share of rows whose value another row has) within one epoch: for a
    per-epoch table, where each sample repeats once per epoch by design, those of its largest epoch."""
    parts = [df] if epoch_col is None else [g for _, g in df.groupby(epoch_col, sort=False, dropna=False)]
    best = (0, 0, 0.0)
    for part in parts:
        codes = dense_codes(part[col])
        counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype=int)
        if len(codes) > best[0]:
            best = (len(codes), len(counts), int(counts[counts > 1].sum()) / max(len(codes), 1))
    return best


def detect_group_column(df: pd.DataFrame, wanted: str | None, id_col: str | None, epoch_col: str | None,
                        notes: list[str]) -> str | None:
    """The column whose groups the bootstrap resamples, or None (rows), saying which in `notes`.

    `wanted`: a column (used as given; absent is an error), "none" (rows, no detection) or None (detect):
    a column named like a patient, subject, video, case or group id (`CLUSTER_NAMES`, optionally with
    `_id`) that repeats a value, or else the sample id column when it repeats clearly (at least 2 rows per
    value on average, or half the rows sharing their value), counted within one epoch of a per-epoch table;
    with at least `MIN_GROUPS` groups."""
    if wanted is not None and str(wanted).strip().lower() in NO_GROUPING:
        return None
    if wanted is not None and str(wanted).strip():
        if wanted not in df.columns:
            raise MlvizError(f"the group-id column '{wanted}' is not in the predictions (columns: {_list(df.columns)}); "
                             "name the column holding the patient/subject/video id, or 'none' to resample rows")
        rows, distinct, _ = _repeats(df, wanted, epoch_col)
        rows, distinct = max(rows, 1), max(distinct, 1)
        notes.append(f"bootstrap: intervals resample the {distinct} groups of '{wanted}' whole "
                     f"({rows / distinct:.1f} rows per group on average; --group-id)"
                     + (f"; with fewer than {MIN_GROUPS} groups the intervals are rough" if distinct < MIN_GROUPS
                        else ""))
        return wanted
    named = [c for c in df.columns if c not in (epoch_col, id_col) and CLUSTER_RE.match(str(c))]
    for col in named + ([id_col] if id_col else []):
        is_named = bool(CLUSTER_RE.match(str(col)))
        rows, distinct, shared = _repeats(df, col, epoch_col)
        repeated = distinct < rows if is_named else (rows >= 2 * distinct or shared >= 0.5)
        if not repeated:
            continue
        if distinct < MIN_GROUPS:
            notes.append(f"'{col}' repeats values ({rows} rows, {distinct} distinct) but has fewer than "
                         f"{MIN_GROUPS} groups, so intervals resample rows (pass --group-id {col} to resample groups)")
            continue
        within = " within an epoch" if epoch_col else ""
        notes.append(f"bootstrap: '{col}' repeats values{within} ({rows} rows, {distinct} distinct), so the rows "
                     f"are not independent: intervals resample the {distinct} groups of '{col}' whole "
                     "(--group-id none resamples rows)")
        return col
    return None


def _metadata(df: pd.DataFrame, cmap: ColumnMap, used: set[str], notes: list[str] | None = None,
              group_column: str | None = None) -> tuple[pd.DataFrame, dict]:
    cols = list(df.columns)
    id_col = cmap.id_column or _first(cols, ID_NAMES)
    img_col = cmap.image_column or _first(cols, IMAGE_INDEX_NAMES)
    path_col = cmap.image_path_column or _first(cols, IMAGE_PATH_NAMES)
    epoch_col = cmap.epoch_column if cmap.epoch_column in cols else None
    for what, c in (("id", cmap.id_column), ("image", cmap.image_column), ("image path", cmap.image_path_column)):
        if c is not None and c not in cols:
            raise MlvizError(f"the {what} column '{c}' is not in the predictions (columns: {_list(cols)})")
    if img_col is not None:
        idx = pd.to_numeric(df[img_col], errors="coerce")
        if idx.isna().any() or (idx % 1 != 0).any() or (idx < 0).any():
            raise MlvizError(f"image index column '{img_col}' must hold non-negative integers")
    cluster = detect_group_column(df, group_column if group_column is not None else cmap.group_column, id_col,
                                  epoch_col, [] if notes is None else notes)
    special = {c for c in (id_col, img_col, path_col, epoch_col, cluster) if c}
    if cmap.group_columns is not None:
        absent = [c for c in cmap.group_columns if c not in cols]
        if absent:
            raise MlvizError(f"grouping column(s) {absent} are not in the predictions (columns: {_list(cols)})")
        groups = list(cmap.group_columns)
    else:
        groups = []
        for c in cols:
            if c in used or c in special or str(c).lower().startswith(NON_GROUP_PREFIXES):
                continue
            s = df[c]
            nunique = s.nunique(dropna=True)
            discrete = (s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == bool
                        or pd.api.types.is_string_dtype(s)
                        or (pd.api.types.is_integer_dtype(s) and nunique <= 20))
            if discrete and 2 <= nunique <= MAX_GROUP_VALUES and nunique < max(len(df) / 2, 2):
                groups.append(c)
    keep = [c for c in cols if c not in used or c in special or c in groups]
    meta = df[keep].reset_index(drop=True).copy()
    return meta, {"id_column": id_col, "image_column": img_col, "image_path_column": path_col,
                  "group_columns": groups, "epoch_column": epoch_col, "group_column": cluster}


def predictions_from_frame(df: pd.DataFrame, column_map: ColumnMap | dict | None = None,
                           contract: dict | None = None, group_column: str | None = None) -> Predictions:
    """A validated `Predictions` from a predictions table (see the module docstring for the layouts).

    `group_column` (`--group-id`) overrides the map's: a column whose groups the bootstrap resamples whole,
    or "none" for rows; None detects it (`detect_group_column`)."""
    if not isinstance(df, pd.DataFrame):
        raise MlvizError("predictions must be a table (pandas DataFrame)")
    if len(df) == 0:
        raise MlvizError("the predictions table is empty")
    if isinstance(column_map, dict):
        column_map = ColumnMap.from_dict(column_map)
    if column_map is None and contract is not None:
        column_map = ColumnMap.from_dict(contract)
    cmap = column_map or ColumnMap()
    if cmap.rename:
        absent = [c for c in cmap.rename if c not in df.columns]
        if absent:
            raise MlvizError(f"column map renames {absent}, which are not in the predictions (columns: {_list(df.columns)})")
        df = df.rename(columns=cmap.rename)
    df = df.reset_index(drop=True)
    notes: list[str] = []
    cmap = _detect(df, cmap, notes)
    if cmap.task == "multioutput":
        parts = _read_heads(df, cmap)
        used = {c for d in parts["source"]["heads"].values() for c in [d["label"], *d["scores"]]}
    elif cmap.task == "regression":
        parts = _read_regression(df, cmap)
        used = {cmap.label, cmap.prediction}
    else:
        parts = _read_single(df, cmap)
        used = {cmap.label, *cmap.scores}
    meta, roles = _metadata(df, cmap, used, notes, group_column)
    return Predictions(metadata=meta, **parts, **roles, notes=notes)


def predictions_from_arrays(y_true, scores, task: str | None = None, class_names: list[str] | None = None,
                            head_names: list[str] | None = None, metadata: pd.DataFrame | None = None,
                            probabilities: bool | None = None, **roles) -> Predictions:
    """A validated `Predictions` from arrays (notebooks, tests): same checks as for a table."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if len(y) != len(s):
        raise MlvizError(f"y_true has {len(y)} rows but scores has {len(s)}; they must be the same length")
    if metadata is not None and len(metadata) != len(y):
        raise MlvizError(f"metadata has {len(metadata)} rows but there are {len(y)} predictions")
    if len(y) == 0:
        raise MlvizError("no predictions")
    if task is None:
        task = "binary" if s.ndim == 1 else ("multiclass" if s.ndim == 2 else "multioutput")
    if not np.isfinite(s).all():
        bad = ~np.isfinite(s.reshape(len(s), -1)).all(axis=1)
        raise MlvizError(f"scores have {int(bad.sum())} rows with missing or infinite values (rows {_rows(bad)})")
    if task in ("multiclass", "multioutput"):
        _check_probabilities(s.reshape(len(s), -1), ["scores"] * int(np.prod(s.shape[1:])))
        flat = s if task == "multiclass" else s.reshape(-1, s.shape[-1])
        _check_sums(flat, ["scores[..., 0]", f"scores[..., {s.shape[-1] - 1}]"])
    if task == "binary":
        if probabilities is None:
            probabilities = bool(((s >= 0) & (s <= 1)).all())
        if probabilities:
            _check_probabilities(s, ["scores"])
    if task != "regression":
        y = y.astype(int)
        if class_names is None:
            class_names = [str(i) for i in range(2 if task == "binary" else s.shape[-1])]
    if task == "multioutput":
        head_names = head_names or [f"head{h}" for h in range(s.shape[1])]
        class_names = class_names or [str(i) for i in range(s.shape[2])]
    meta = metadata.reset_index(drop=True) if metadata is not None else pd.DataFrame(index=pd.RangeIndex(len(y)))
    return Predictions(task, y, s, list(class_names or []), list(head_names or []), meta,
                       probabilities=bool(probabilities) if task == "binary" else task != "regression", **roles)
