"""Bringing results that live outside MLflow into it, so they get the same analysis.

- `two_stage`: the CSV/JSON layout of a hand-written two-stage sweep (`quick_search_results.csv`,
  `full_search_results.csv`, `training_histories.json`, keyed by `combination_id`);
- `optuna_study`: every trial of an Optuna study (any storage URL), intermediate values as histories;
- `epoch_run`: one training run's `metrics_epoch.csv` (per-epoch metrics) and `val_predictions.csv`.

Each importer reads and validates everything before it writes anything, so bad input leaves nothing
half-imported; every run carries an `mlviz.import_key` tag and a second import of the same source
skips the runs already there instead of duplicating them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from mlviz.errors import MlvizError
from mlviz.text import first_line

IMPORT_TAG = "mlviz.import_key"
PENDING_TAG = "mlviz.import_pending"
_METRIC_NAME_RE = re.compile(r"(auc|f1|precision|recall|acc|accuracy|loss|error|score|mse|mae|rmse|r2|ap$|"
                             r"brier|ece|nll|improvement)", re.IGNORECASE)


@dataclass
class RunSpec:
    """One run to create: everything is known before the first write."""

    key: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "FINISHED"
    parent_key: str | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)  # artifact dir → local file
    link_tags: dict[str, str] = field(default_factory=dict)  # tag → key of another run (its id is filled in)


@dataclass
class ImportResult:
    experiment_id: str
    created: int
    skipped_existing: int
    run_ids: dict[str, str]
    redone: int = 0  # half-written runs of an interrupted import, deleted and imported again


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise MlvizError(f"{path} does not exist")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MlvizError(f"{path} is not a readable CSV ({first_line(exc)})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MlvizError(f"{path.name} lacks the required column(s) {', '.join(missing)} "
                         f"(found: {', '.join(map(str, frame.columns[:15]))})")
    return frame


def _folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise MlvizError(f"{folder} is not a folder")
    return folder


def _is_metric_column(name: str, values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and bool(
        _METRIC_NAME_RE.search(name))


def _value(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer() and abs(v) < 1e15:
        return repr(float(v))
    return str(v)


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- two-stage CSV layout
def two_stage(folder: str | Path, param_columns: list[str] | None = None,
              metric_columns: list[str] | None = None) -> list[RunSpec]:
    """Runs for the seed layout: a `stage1` parent with one child per quick-search row, a `stage2`
    parent with one child per full-search row (tagged with its criterion and its stage-1 run)."""
    folder = _folder(folder)
    quick = _read_csv(folder / "quick_search_results.csv", ["combination_id"])
    full_path = folder / "full_search_results.csv"
    full = _read_csv(full_path, ["combination_id"]) if full_path.exists() else None
    histories = {}
    hist_path = folder / "training_histories.json"
    if hist_path.exists():
        try:
            histories = json.loads(hist_path.read_text())
        except ValueError as exc:
            raise MlvizError(f"{hist_path.name} is not valid JSON ({exc})") from None
    stage2_only = {"stage2_rank", "selection_criterion"}
    for option, named in (("--params", param_columns), ("--metrics", metric_columns)):
        missing = [c for c in named or [] if c not in quick.columns]
        if missing:
            raise MlvizError(f"{option} names {', '.join(repr(c) for c in missing)}, not a column of "
                             f"quick_search_results.csv ({', '.join(map(str, quick.columns[:12]))})")

    def split(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
        cols = [c for c in frame.columns if c != "combination_id" and c not in stage2_only]
        if metric_columns is not None:
            metrics = [c for c in cols if c in metric_columns]
        else:
            metrics = [c for c in cols if _is_metric_column(c, frame[c]) and (param_columns is None or c not in param_columns)]
        params = [c for c in cols if c not in metrics and (param_columns is None or c in param_columns)]
        return params, metrics

    source = str(folder.resolve())
    # The metric whose stage-1 value the full results repeat as quick_<metric> is the objective.
    quick_of = [c[len("quick_"):] for c in (full.columns if full is not None else []) if c.startswith("quick_")]
    objective = next((m for m in quick_of if m in quick.columns), None)
    sweep_tags = {"mlviz.objective": objective} if objective else {}
    runs = [RunSpec(_key(source, "stage1"), "stage1", tags={"mlviz.stage": "1", **sweep_tags})]
    params1, metrics1 = split(quick)
    # Rows as dicts, not iterrows(): iterrows upcasts an all-numeric row to float ('2' becomes '2.0').
    for row in quick.to_dict("records"):
        cid = str(row["combination_id"])
        runs.append(RunSpec(
            _key(source, "stage1", cid), f"combination-{cid}",
            params={p: _value(row[p]) for p in params1 if pd.notna(row[p])},
            metrics={m: float(row[m]) for m in metrics1 if pd.notna(row[m])},
            tags={"mlviz.stage": "1", "mlviz.combination_id": cid}, parent_key=_key(source, "stage1")))
    if full is not None:
        runs.append(RunSpec(_key(source, "stage2"), "stage2", tags={"mlviz.stage": "2", **sweep_tags}))
        params2, metrics2 = split(full)
        quick_ids = set(quick["combination_id"].astype(str))
        full_ids = [str(v) for v in full["combination_id"]]
        ranks = [(str(int(r)) if isinstance(r, float) and r.is_integer() else str(r)) if pd.notna(r) else str(i + 1)
                 for i, r in enumerate(full["stage2_rank"] if "stage2_rank" in full else [None] * len(full))]
        # What the history file is keyed by, decided once for the whole file: combination ids when any key
        # is one (then a candidate without its key has no history), else stage-2 ranks, else row numbers.
        keys = set(histories)
        key_of = (full_ids if keys & set(full_ids) else ranks if keys & set(ranks)
                  else [str(i) for i in range(len(full))])
        for i, row in enumerate(full.to_dict("records")):
            cid, rank = full_ids[i], ranks[i]
            tags = {"mlviz.stage": "2", "mlviz.stage2_rank": rank, "mlviz.combination_id": cid}
            if "selection_criterion" in full and pd.notna(row["selection_criterion"]):
                tags["mlviz.selection_criterion"] = str(row["selection_criterion"])
            metrics = {("stage1_" + m[len("quick_"):] if m.startswith("quick_") else m): float(row[m])
                       for m in metrics2 if pd.notna(row[m])}
            hist = histories.get(key_of[i])
            series = {k: [(s, float(v)) for s, v in enumerate(vals, start=1)]
                      for k, vals in (hist.items() if isinstance(hist, dict) else ())
                      if isinstance(vals, list) and vals and all(isinstance(v, (int, float)) for v in vals)}
            runs.append(RunSpec(
                _key(source, "stage2", cid, rank), f"full-{cid}",
                params={p: _value(row[p]) for p in params2 if pd.notna(row[p])},
                metrics=metrics, histories=series, tags=tags, parent_key=_key(source, "stage2"),
                link_tags={"mlviz.stage1_run_id": _key(source, "stage1", cid)} if cid in quick_ids else {}))
    return runs


# --------------------------------------------------------------------------- Optuna
_OPTUNA_STATUS = {"COMPLETE": "FINISHED", "FAIL": "FAILED", "PRUNED": "KILLED", "RUNNING": "RUNNING",
                  "WAITING": "SCHEDULED"}


def _readable_optuna_storage(storage: str) -> tuple[str, str | None]:
    """Optuna creates or migrates a SQLite file it opens; read a temporary copy instead."""
    parsed = urlparse(storage)
    if parsed.scheme != "sqlite":
        return storage, None
    path = Path(unquote(storage[len("sqlite:///"):]))
    if not path.is_file():
        raise MlvizError(f"no Optuna storage at {path} (the SQLite file does not exist)")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        con.close()
    except sqlite3.DatabaseError as exc:
        raise MlvizError(f"{path} is not an SQLite file ({exc})") from None
    if "studies" not in tables or "trials" not in tables:
        raise MlvizError(f"{path} is not an Optuna storage (no studies/trials tables)")
    tmp = tempfile.mkdtemp(prefix="mlviz-optuna-")
    shutil.copy2(path, Path(tmp) / path.name)
    return f"sqlite:///{Path(tmp) / path.name}", tmp


def optuna_study(storage: str, study_name: str, metric: str | None = None) -> list[RunSpec]:
    """A parent run named after the study and one child per trial."""
    if metric is not None and not metric.strip():
        raise MlvizError("--metric is blank: name the objective's metric, or leave the option out")
    try:
        import optuna
    except ImportError:
        raise MlvizError("importing an Optuna study needs optuna: pip install 'mlviz[optuna]'") from None
    url, tmp = _readable_optuna_storage(storage)
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            names = optuna.study.get_all_study_names(storage=url)
        except Exception as exc:  # noqa: BLE001 - any storage failure is the user's URL
            raise MlvizError(f"cannot open Optuna storage {storage}: {first_line(exc)}") from None
        if study_name not in names:
            raise MlvizError(f"no study named '{study_name}' in {storage} (found: {', '.join(names) or 'none'})")
        study = optuna.load_study(study_name=study_name, storage=url)
        trials = study.get_trials(deepcopy=False)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    metric_names = study.metric_names or [metric or "value"]
    if len(study.directions) > 1 and len(metric_names) != len(study.directions):
        metric_names = [f"value_{i}" for i in range(len(study.directions))]
    directions = [d.name.lower().replace("minimize", "min").replace("maximize", "max") for d in study.directions]
    parent_key = _key("optuna", study_name)
    runs = [RunSpec(parent_key, study_name, tags={"mlviz.stage": "1", "optuna.study": study_name,
                                                 "mlviz.objective": metric_names[0], "mlviz.mode": directions[0]})]
    for t in trials:
        values = zip(metric_names, t.values, strict=True) if t.values is not None else ()
        metrics = {m: float(v) for m, v in values}
        for k, v in t.user_attrs.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                metrics.setdefault(k, float(v))
        hist = {metric_names[0]: sorted((int(s), float(v)) for s, v in t.intermediate_values.items())} \
            if t.intermediate_values else {}
        if hist and metric_names[0] not in metrics:
            metrics[metric_names[0]] = hist[metric_names[0]][-1][1]
        runs.append(RunSpec(
            _key("optuna", study_name, str(t.number)), f"trial-{t.number:04d}",
            params={k: _value(v) for k, v in t.params.items()}, metrics=metrics, histories=hist,
            tags={"mlviz.stage": "1", "optuna.trial": str(t.number), "optuna.state": t.state.name},
            status=_OPTUNA_STATUS.get(t.state.name, "FINISHED"), parent_key=parent_key))
    return runs


# --------------------------------------------------------------------------- per-epoch run layout
def epoch_run(folder: str | Path, name: str | None = None) -> list[RunSpec]:
    """One run from `metrics_epoch.csv` (an `epoch` column and metric columns) and, if present,
    `val_predictions.csv` (logged as the run's predictions artifact)."""
    if name is not None and not name.strip():
        raise MlvizError("--name is blank: name the run, or leave the option out (the folder's name)")
    folder = _folder(folder)
    frame = _read_csv(folder / "metrics_epoch.csv", ["epoch"])
    numeric = [c for c in frame.columns if c != "epoch" and pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric:
        raise MlvizError("metrics_epoch.csv has no numeric metric column besides 'epoch'")
    histories = {c: [(int(e), float(v)) for e, v in zip(frame["epoch"], frame[c], strict=True) if pd.notna(v)]
                 for c in numeric}
    artifacts = {}
    preds = folder / "val_predictions.csv"
    if preds.exists():
        _read_csv(preds, [])
        artifacts["predictions"] = preds
    digest = hashlib.sha256((folder / "metrics_epoch.csv").read_bytes()).hexdigest()
    return [RunSpec(_key("epochs", digest), name or folder.name,
                    metrics={c: h[-1][1] for c, h in histories.items() if h}, histories=histories,
                    artifacts=artifacts)]


# --------------------------------------------------------------------------- writing
def write_runs(writer, experiment: str, runs: list[RunSpec]) -> ImportResult:
    """Create the runs (parents first) through a `mlviz.store.write.Writer`; runs whose import key is
    already there are skipped. A run carries its key only once it is complete: one left half-written by
    an interrupted import (tagged `mlviz.import_pending`) is deleted and imported again."""
    exp_id = writer.experiment(experiment)
    existing, pending = {}, []
    for r in writer.search([exp_id], filter_string=f"tags.`{IMPORT_TAG}` != ''"):
        if r.info.status == "RUNNING":  # keyed at creation by an older mlviz, never finished: redo it
            pending.append(r.info.run_id)
            continue
        existing[r.data.tags[IMPORT_TAG]] = r.info.run_id
    for r in writer.search([exp_id], filter_string=f"tags.`{PENDING_TAG}` != ''"):
        if IMPORT_TAG not in r.data.tags:
            pending.append(r.info.run_id)
    for run_id in pending:
        writer.delete_run(run_id)
    ids = dict(existing)
    created = 0
    now = int(time.time() * 1000)
    for spec in sorted(runs, key=lambda s: s.parent_key is not None):
        if spec.key in existing:
            continue
        tags = {**spec.tags, PENDING_TAG: spec.key}
        if spec.parent_key:
            tags["mlflow.parentRunId"] = ids[spec.parent_key]
        for tag, other in spec.link_tags.items():
            if other in ids:
                tags[tag] = ids[other]
        run_id = writer.create_run(exp_id, spec.name, tags, start_time=now + created)
        ids[spec.key] = run_id
        writer.log(run_id, metrics=spec.metrics, params=spec.params, tags={"mlviz.imported": "1"},
                   histories=spec.histories, timestamp=now)
        for path, local in spec.artifacts.items():
            writer.log_artifact(run_id, local, artifact_path=path)
        writer.finish(run_id, spec.status, end_time=now + created)
        writer.set_tags(run_id, {IMPORT_TAG: spec.key})  # last: only a complete run counts as imported
        created += 1
    return ImportResult(exp_id, created, len([s for s in runs if s.key in existing]), ids, len(pending))
