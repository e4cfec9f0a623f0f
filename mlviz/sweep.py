"""The Sweep: one tidy, typed table of the runs of a hyperparameter sweep.

Pure code (pandas only): the store layer hands in plain run records, this module decides what every
stored parameter string means, which runs belong to the analysis and why the others were left out.
Columns follow `mlflow.search_runs`: `run_id`, `run_name`, `status`, `parent_run_id`, `stage`,
`start_time`, `selection_criterion` and `stage1_run_id` (from mlviz tags, for two-stage sweeps), then
`params.<name>` (typed) and `metrics.<name>` (float).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

MISSING_STRINGS = frozenset({"", "none", "null", "nan", "na", "n/a"})
_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf(inity)?)$", re.IGNORECASE)
_MINIMISE_RE = re.compile(r"(loss|error|err\b|_err|mse|mae|rmse|mape|nll|brier|ece|perplexity|regret|latency|"
                          r"duration|time)", re.IGNORECASE)
_OBJECT_REPR_RE = re.compile(r"^<([A-Za-z_][\w.]*) object at 0x[0-9a-fA-F]+>$")
_SEED_NAME_RE = re.compile(r"^(seed|random_seed|random_state|rng_seed|run_seed|trial_seed)$", re.IGNORECASE)
_STAGE_NAME_RE = re.compile(r"stage[\s_-]*([12])(?!\d)", re.IGNORECASE)

PARAM_PREFIX = "params."
METRIC_PREFIX = "metrics."
CRITERION_TAG = "mlviz.selection_criterion"
STAGE1_RUN_TAG = "mlviz.stage1_run_id"
ANALYSIS_TAG = "mlviz.analysis"
STAGE_TAG = "mlviz.stage"
PARENT_TAG = "mlflow.parentRunId"


def is_missing(raw: object) -> bool:
    """True for what MLflow writes when a value was absent (`None`, empty, `nan`)."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return True
    return str(raw).strip().lower() in MISSING_STRINGS


def parse_scalar(raw: object) -> object:
    """The typed value of one stored parameter string: None, bool, int, float or str."""
    if is_missing(raw):
        return None
    text = str(raw).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INT_RE.match(text):
        return int(text)
    if _FLOAT_RE.match(text):
        return float(text)
    return text


@dataclass
class ParamSpec:
    """What one swept parameter is: its kind, scale and values."""

    name: str
    kind: str  # "int" | "float" | "bool" | "categorical"
    log_scale: bool = False
    fixed: bool = False
    n_unique: int = 0
    n_missing: int = 0
    values: list = field(default_factory=list)  # sorted distinct values (first 50)
    seed: bool = False  # a replicate seed (`seed`, `random_state`, ...): repeats, not a hyperparameter
    left_out: str | None = None  # why the analyses leave it out (an identifier, an alias of another parameter)
    alias_of: str | None = None  # the parameter with identical values on every run, drawn in its place

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")

    @property
    def column(self) -> str:
        return PARAM_PREFIX + self.name

    def to_dict(self) -> dict:
        d = asdict(self)
        d["values"] = [_jsonable(v) for v in self.values]
        return d


def _jsonable(v):
    return v.item() if isinstance(v, (np.integer, np.floating, np.bool_)) else v


def _is_log_scaled(values: np.ndarray, kind: str) -> bool:
    """A positive parameter spanning two decades and crowded at its low end on a linear axis (as
    log-uniform samples are), or powers of 2 or 10 spanning a factor of 8."""
    finite = values[np.isfinite(values)]
    if len(np.unique(finite)) < 3 or finite.min() <= 0:
        return False
    lo, hi, med = finite.min(), finite.max(), np.median(finite)
    ratio = hi / lo
    if ratio >= 100 and (med - lo) / (hi - lo) < 0.2:  # crowded at the low end of a linear axis
        return True
    exponents = (np.log(finite) / np.log(base) for base in (2.0, 10.0))  # powers of 2 or 10
    return bool(ratio >= 8 and any(np.allclose(e, np.round(e), atol=1e-9) for e in exponents))


def normalise_object_reprs(raw: Sequence[object]) -> tuple[list[object], int]:
    """`<keras.optimizers.SGD object at 0x7f…>` → `keras.optimizers.SGD`: the address differs on every
    run and says nothing about the configuration. Returns the values and how many were rewritten."""
    out, n = [], 0
    for v in raw:
        m = _OBJECT_REPR_RE.match(str(v).strip()) if isinstance(v, str) else None
        out.append(m.group(1) if m else v)
        n += bool(m)
    return out, n


def apply_hygiene(specs: dict[str, ParamSpec], columns: dict[str, object], n_runs: int) -> list[str]:
    """Leave out identifier-like parameters (a distinct non-numeric value on every run: a run name, a
    path, a hash) and report parameters identical to another on every run as aliases, drawn once.
    Marks the specs; returns one note per decision."""
    notes = []
    for spec in specs.values():
        if (spec.kind == "categorical" and not spec.seed and n_runs >= 5 and spec.n_missing == 0
                and spec.n_unique == n_runs):
            spec.left_out = f"identifier-like: a distinct non-numeric value on each of the {n_runs} runs"
            notes.append(f"parameter '{spec.name}' left out of the analyses ({spec.left_out})")
    groups: dict[tuple, list[str]] = {}
    for name, spec in specs.items():
        if spec.fixed or spec.left_out:
            continue
        key = tuple("\0" if v is None or v != v else str(v) for v in np.asarray(columns[spec.column], dtype=object))
        groups.setdefault(key, []).append(name)
    for names in groups.values():
        if len(names) < 2:
            continue
        keep = max(names, key=lambda n: (len(n), n))  # the most descriptive name: learning_rate over lr
        for other in names:
            if other != keep:
                specs[other].alias_of = keep
                specs[other].left_out = f"alias of '{keep}' (identical values on every run)"
        others = ", ".join(f"'{n}'" for n in names if n != keep)
        notes.append(f"parameters {others} and '{keep}' have identical values on every run: drawn once as '{keep}'")
    return notes


def infer_param(name: str, raw: Sequence[object]) -> tuple[ParamSpec, pd.Series]:
    """Type one parameter column from the strings MLflow stored: bool, int, float (`1e-3`, `0.5`, `7`) when
    every present value is one, else categorical strings; `None`, empty and `nan` are missing."""
    parsed = [parse_scalar(v) for v in raw]
    present = [v for v in parsed if v is not None]
    n_missing = len(parsed) - len(present)
    types = {type(v) for v in present}
    if int in types and any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53 for v in present):
        types = {str}  # beyond float64's exact integers (a SeedSequence entropy, a hash): kept as exact text
    if not present:
        kind, series = "categorical", pd.Series([None] * len(parsed), dtype=object)
    elif types == {bool}:
        kind = "bool"
        series = pd.Series(parsed, dtype="boolean")
    elif types == {int}:
        kind = "int"
        series = pd.Series([np.nan if v is None else v for v in parsed], dtype=float)
        if n_missing == 0:
            series = series.astype("int64")
    elif types <= {int, float}:
        kind = "float"
        series = pd.Series([np.nan if v is None else float(v) for v in parsed], dtype=float)
    else:
        kind = "categorical"
        series = pd.Series([None if v is None else str(raw[i]).strip() for i, v in enumerate(parsed)],
                           dtype=object)
    # Distinct values from the parsed Python values, so an int column with a missing value (held as
    # float64 for the analyses) still reports ints.
    distinct = list({v for v in present}) if kind in ("int", "bool") else pd.unique(series.dropna())
    try:
        distinct = sorted(distinct)
    except TypeError:
        distinct = sorted(distinct, key=str)
    log_scale = kind in ("int", "float") and _is_log_scaled(np.asarray(series.dropna(), dtype=float), kind)
    spec = ParamSpec(name=name, kind=kind, log_scale=bool(log_scale), fixed=len(distinct) <= 1,
                     n_unique=len(distinct), n_missing=n_missing,
                     values=[_jsonable(v) for v in distinct[:50]], seed=bool(_SEED_NAME_RE.match(name)))
    return spec, series


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def default_direction(metric: str) -> str:
    """`min` for metrics named like a loss or an error, `max` otherwise."""
    return "min" if _MINIMISE_RE.search(metric) else "max"


_OBJECTIVE_PREFERENCE = [
    r"^(val|valid|validation|eval|test)[_/.-]?(roc_?)?auc",
    r"^(val|valid|validation|eval|test)[_/.-]?(acc|accuracy|f1)",
    r"^(val|valid|validation|eval|test)[_/.-]?loss",
    r"^(roc_?)?auc$",
    r"^(accuracy|acc|f1|f1_score)$",
    r"^loss$",
]


def choose_objective(metrics: Iterable[str]) -> str | None:
    """A sensible default objective: a validation AUC/accuracy/loss before training ones (the caller
    passes only metrics that (nearly) every run logged)."""
    names = sorted(metrics)
    for pattern in _OBJECTIVE_PREFERENCE:
        rx = re.compile(pattern, re.IGNORECASE)
        for m in names:
            if rx.search(m):
                return m
    return names[0] if names else None


@dataclass
class Exclusion:
    run_id: str
    run_name: str | None
    reason: str


def _reason_counts(excluded: Iterable[Exclusion]) -> dict[str, int]:
    """Runs left out per reason (the reason up to its first ':'), in order of first appearance."""
    return dict(Counter(e.reason.split(":")[0] for e in excluded))


@dataclass
class Sweep:
    """The runs of one sweep as a typed table, plus what was left out and why."""

    runs: pd.DataFrame
    params: dict[str, ParamSpec]
    metrics: list[str]
    objective: str
    mode: str  # "min" | "max"
    excluded: list[Exclusion] = field(default_factory=list)
    source: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def objective_column(self) -> str:
        return METRIC_PREFIX + self.objective

    @property
    def varied_params(self) -> list[ParamSpec]:
        """Hyperparameters that take more than one value (replicate seeds are not hyperparameters)."""
        return [p for p in self.params.values() if not p.fixed and not p.seed and not p.left_out]

    @property
    def fixed_params(self) -> list[ParamSpec]:
        return [p for p in self.params.values() if p.fixed]

    def stage(self, n: int) -> Sweep:
        """The same sweep restricted to one stage, with parameters re-typed on those runs."""
        sub = self.runs[self.runs["stage"] == n].reset_index(drop=True)
        params = {}
        for name, spec in self.params.items():
            col = sub[spec.column]
            distinct = pd.unique(col.dropna())
            params[name] = ParamSpec(**{**asdict(spec), "fixed": len(distinct) <= 1, "n_unique": len(distinct)})
        return Sweep(sub, params, self.metrics, self.objective, self.mode, [], self.source, list(self.notes))

    def best(self, k: int = 1) -> pd.DataFrame:
        """The k best runs by the objective."""
        ascending = self.mode == "min"
        return self.runs.sort_values(self.objective_column, ascending=ascending, kind="mergesort").head(k)

    def exclusion_counts(self) -> dict[str, int]:
        return _reason_counts(self.excluded)

    def describe(self) -> dict:
        """JSON-serialisable description for summary.json."""
        stages = self.runs["stage"].value_counts().sort_index()
        return {
            "objective": self.objective, "mode": self.mode, "n_runs": int(len(self.runs)),
            "runs_per_stage": {str(int(k)): int(v) for k, v in stages.items()},
            "params": {name: spec.to_dict() for name, spec in self.params.items()},
            "fixed_params": {p.name: (p.values[0] if p.values else None) for p in self.fixed_params},
            "left_out_params": {p.name: p.left_out for p in self.params.values() if p.left_out},
            "aliases": {p.name: p.alias_of for p in self.params.values() if p.alias_of},
            "metrics": list(self.metrics),
            "excluded": {"count": len(self.excluded), "by_reason": self.exclusion_counts(),
                         "runs": [asdict(e) for e in self.excluded]},
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- selection


def descendants(records: Sequence[Mapping], root_id: str) -> set[str]:
    """Run ids nested under `root_id` at any depth (not including the root)."""
    children: dict[str, list[str]] = {}
    for r in records:
        parent = r["tags"].get(PARENT_TAG)
        if parent:
            children.setdefault(parent, []).append(r["run_id"])
    found: set[str] = set()
    stack = [root_id]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _ancestors(run_id: str, by_id: Mapping[str, Mapping]) -> list[Mapping]:
    chain, seen = [], {run_id}
    parent = by_id[run_id]["tags"].get(PARENT_TAG)
    while parent and parent in by_id and parent not in seen:
        seen.add(parent)
        chain.append(by_id[parent])
        parent = by_id[parent]["tags"].get(PARENT_TAG)
    return chain


def assign_stage(record: Mapping, by_id: Mapping[str, Mapping], stage_parents: Mapping[int, str]) -> int:
    """Stage of a run: CLI-selected stage parents first, then the `mlviz.stage` tag, then the name
    of the nearest ancestor named like `stage1`/`stage2`; 1 when nothing says otherwise."""
    ancestors = _ancestors(record["run_id"], by_id)
    for stage, selector in stage_parents.items():
        if any(a["run_id"] == selector or a.get("run_name") == selector for a in ancestors):
            return int(stage)
    tag = str(record["tags"].get(STAGE_TAG, "")).strip()
    if tag in ("1", "2"):
        return int(tag)
    for a in ancestors:
        m = _STAGE_NAME_RE.search(a.get("run_name") or "")
        if m:
            return int(m.group(1))
    return 1


_STATUS_REASON = {"FAILED": "failed", "KILLED": "killed", "RUNNING": "unfinished", "SCHEDULED": "unfinished"}


def build_sweep(records: Sequence[Mapping], *, objective: str | None = None, mode: str | None = None,
                statuses: Sequence[str] = ("FINISHED",), parent_run: str | None = None,
                stage_parents: Mapping[int, str] | None = None,
                unreadable: Sequence[tuple[str, str]] = (),  # (run id, why): folders MLflow could not read
                source: Mapping | None = None) -> Sweep:
    """Turn plain run records (from the store layer) into a Sweep.

    A record is a mapping with `run_id`, `run_name`, `status`, `lifecycle_stage`, `start_time`,
    `params` (str → str), `metrics` (str → float) and `tags` (str → str). Every record left out is
    kept in `Sweep.excluded` with its reason.
    """
    from mlviz.errors import MlvizError

    by_id = {r["run_id"]: r for r in records}
    excluded: list[Exclusion] = [Exclusion(run_id, None, why) for run_id, why in unreadable]
    notes: list[str] = []
    if parent_run is not None:
        root = by_id.get(parent_run) or next((r for r in records if r.get("run_name") == parent_run), None)
        if root is None:
            raise MlvizError(f"parent run '{parent_run}' is not in the selected experiment")
        keep = descendants(records, root["run_id"])
        candidates = [r for r in records if r["run_id"] in keep]
    else:
        candidates = list(records)

    has_children = {r["tags"].get(PARENT_TAG) for r in candidates if r["tags"].get(PARENT_TAG)}
    wanted = {s.upper() for s in statuses}
    kept = []
    for r in candidates:
        status = str(r.get("status", "")).upper()
        if r["tags"].get(ANALYSIS_TAG):
            reason = "mlviz analysis run"
        elif r.get("lifecycle_stage") == "deleted":
            reason = "deleted"
        elif r["run_id"] in has_children:
            n = sum(1 for c in candidates if c["tags"].get(PARENT_TAG) == r["run_id"])
            reason = f"parent run: groups {n} child runs"
        elif status not in wanted:
            reason = f"{_STATUS_REASON.get(status, 'status')}: status {status}"
        else:
            kept.append(r)
            continue
        excluded.append(Exclusion(r["run_id"], r.get("run_name"), reason))

    if not kept:
        counts = _reason_counts(excluded)
        reasons = ", ".join(f"{v} {k}" for k, v in counts.items()) or "the selection is empty"
        raise MlvizError(f"no run left to analyse ({reasons})")
    all_metrics = sorted({k for r in kept for k in r["metrics"]})
    # The sweep's own tag (e.g. on its parent run), never an earlier mlviz analysis run's record of what
    # it was asked to analyse.
    sweep_runs = [r for r in candidates if not r["tags"].get(ANALYSIS_TAG) and r.get("lifecycle_stage") != "deleted"]
    tagged = next((r["tags"]["mlviz.objective"] for r in sweep_runs if r["tags"].get("mlviz.objective")), None)
    if objective is None and tagged in all_metrics:
        objective = tagged
        mode = mode or next((r["tags"].get("mlviz.mode") for r in sweep_runs if r["tags"].get("mlviz.mode")), None)
        notes.append(f"objective '{objective}' from the sweep's mlviz.objective tag")
    if objective is None:
        # Count finite values only: a metric logged as NaN on every run cannot be the objective.
        coverage = {m: sum(1 for r in kept if _finite(r["metrics"].get(m))) for m in all_metrics}
        top = max(coverage.values(), default=0)
        objective = choose_objective([m for m in all_metrics if coverage[m] >= 0.9 * top])
        if objective is None:
            raise MlvizError(f"none of the {len(kept)} selected runs logged a metric (parameters only)")
        notes.append(f"objective chosen automatically: '{objective}' (pass --metric to choose another)")
    elif objective not in all_metrics:
        available = ", ".join(all_metrics[:20]) or "none"
        raise MlvizError(f"metric '{objective}' was logged by no selected run (available: {available})")
    mode = (mode or default_direction(objective)).lower()
    if mode not in ("min", "max"):
        raise MlvizError(f"mode must be 'min' or 'max', not '{mode}'")

    rows = []
    for r in kept:
        value = r["metrics"].get(objective)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            why = "missing" if value is None else f"non-finite ({value})"
            excluded.append(Exclusion(r["run_id"], r.get("run_name"), f"objective {why}: {objective}"))
            continue
        rows.append(r)

    stage_parents = dict(stage_parents or {})
    for stage, selector in stage_parents.items():
        if not any(r["run_id"] == selector or r.get("run_name") == selector for r in records):
            raise MlvizError(f"--stage{stage}-parent '{selector}' names no run of the selected experiment")
    param_names = sorted({k for r in rows for k in r["params"]})
    base = pd.DataFrame({
        "run_id": [r["run_id"] for r in rows],
        "run_name": [r.get("run_name") for r in rows],
        "status": [r.get("status") for r in rows],
        "parent_run_id": [r["tags"].get(PARENT_TAG) for r in rows],
        "stage": [assign_stage(r, by_id, stage_parents) for r in rows],
        "start_time": [r.get("start_time") for r in rows],
        "selection_criterion": [r["tags"].get(CRITERION_TAG) for r in rows],
        "stage1_run_id": [r["tags"].get(STAGE1_RUN_TAG) for r in rows],
    })
    columns, specs = {}, {}
    for name in param_names:
        raw, n_reprs = normalise_object_reprs([r["params"].get(name) for r in rows])
        if n_reprs:
            notes.append(f"parameter '{name}': {n_reprs} object reprs (<pkg.Class object at 0x…>) read as their "
                         "class name (pkg.Class)")
        spec, series = infer_param(name, raw)
        specs[name] = spec
        columns[PARAM_PREFIX + name] = series.to_numpy() if spec.kind != "bool" else series.array
    notes += apply_hygiene(specs, columns, len(rows))
    metric_names = sorted({k for r in rows for k in r["metrics"]})
    for name in metric_names:
        columns[METRIC_PREFIX + name] = np.array([r["metrics"].get(name, np.nan) for r in rows], dtype=float)
    table = pd.concat([base, pd.DataFrame(columns, index=base.index)], axis=1)
    table = table.sort_values(["start_time", "run_id"], kind="mergesort").reset_index(drop=True)
    return Sweep(runs=table, params=specs, metrics=metric_names, objective=objective, mode=mode,
                 excluded=excluded, source=dict(source or {}), notes=notes)
