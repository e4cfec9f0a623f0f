"""The sweep section: a selection of runs → the stage1/ and stage2/ figures → the analysis run.

Each step is a public function so notebooks can stop anywhere: `load_sweep` (store → Sweep),
`analyse` (Sweep → figures-as-data), `mlviz.publish.publish` (figures → folder or MLflow), and
`visualize_sweep` (all of it, then the best model's own report).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import mlviz
from mlviz.errors import MlvizError
from mlviz.figures import compute_figures, extra_specs
from mlviz.figures.sweep import REGISTRY, Context, SweepOptions
from mlviz.publish import AnalysisRun, ToFolder, progress_bar, publish
from mlviz.report import Related, Report
from mlviz.sweep import ANALYSIS_TAG, METRIC_PREFIX, Sweep, build_sweep, default_direction

SECTIONS = ("stage1", "stage2")


@dataclass
class RunSelection:
    """Which runs to analyse, and how to score them; its key identifies the analysis run."""

    tracking_uri: str | None = None
    experiment: str | None = None
    parent_run: str | None = None
    filter_string: str = ""
    statuses: Sequence[str] = ("FINISHED",)
    metric: str | None = None
    mode: str | None = None
    final: str = "last"  # "last" value of each metric, or "best" of its history
    stage_parents: dict[int, str] = field(default_factory=dict)

    def key(self, experiment_id: str) -> str:
        data = {"experiment_id": experiment_id, "parent_run": self.parent_run, "filter": self.filter_string,
                "statuses": sorted(s.upper() for s in self.statuses), "metric": self.metric, "mode": self.mode,
                "final": self.final, "stage_parents": {str(k): v for k, v in sorted(self.stage_parents.items())}}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- load
def _best_of_history(store, records: list[dict], progress: bool) -> None:
    """Replace each metric's last value with the best value of its history (min for losses)."""
    run_ids = [r["run_id"] for r in records]
    keys = sorted({k for r in records for k in r["metrics"]})
    best = _histories(store, run_ids, keys, progress, extremes=True)  # reduced where the points are
    if best is None:
        best = history_extremes(_histories(store, run_ids, keys, progress))
    for r in records:
        for key in r["metrics"]:
            found = best.get((r["run_id"], key))
            if found is not None:
                r["metrics"][key] = found[default_direction(key) == "max"]


def _histories(store, run_ids: list[str], keys: list[str], progress: bool, extremes: bool = False):
    bar = lambda n: progress_bar(n, "reading histories", progress, unit="req")  # noqa: E731
    return store.histories(run_ids, keys, progress=bar, extremes=extremes)


def history_extremes(hist: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """{(run_id, key): (min, max)} of a long history table sorted by run_id and key (as
    `Store.histories` returns it), NaN values ignored (NaN when all are): one pass over the columns, so
    30 M points take seconds."""
    import numpy as np

    if hist.empty:
        return {}
    run, runs = pd.factorize(hist["run_id"])  # codes, not a Python string per point
    key, keys = pd.factorize(hist["key"])
    starts = np.flatnonzero(np.r_[True, (run[1:] != run[:-1]) | (key[1:] != key[:-1])])
    values = hist["value"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        lo = np.fmin.reduceat(values, starts)
        hi = np.fmax.reduceat(values, starts)
    names = np.asarray(runs, dtype=object)[run[starts]]
    metrics = np.asarray(keys, dtype=object)[key[starts]]
    return {(str(r), str(k)): (float(a), float(b)) for r, k, a, b in zip(names, metrics, lo, hi, strict=True)}


def read_sweep(store, selection: RunSelection, progress: bool = False) -> tuple[Sweep, Any]:
    """Read and type the selected runs from an open `mlviz.store.read.Store`."""
    exp = store.experiment(selection.experiment, selection.parent_run)
    records, unreadable = store.run_records([exp.experiment_id], selection.filter_string)
    if not records and not unreadable:
        where = f" matching filter '{selection.filter_string}'" if selection.filter_string else ""
        raise MlvizError(f"experiment '{exp.name}' has no runs{where}")
    active = os.environ.get("MLFLOW_RUN_ID")
    for r in records:
        if r["run_id"] == active:
            r["tags"][ANALYSIS_TAG] = "visualize"
    if selection.final == "best":
        _best_of_history(store, records, progress)
    # A sweep whose processes were killed leaves every run RUNNING: say how to analyse them anyway.
    hint = "; its unfinished runs are analysed with --status RUNNING" if "RUNNING" not in {
        s.upper() for s in selection.statuses} else ""
    try:
        source = {"tracking_uri": store.uri, "experiment_id": exp.experiment_id, "experiment_name": exp.name}
        sweep = build_sweep(records, objective=selection.metric, mode=selection.mode,
                            statuses=selection.statuses, parent_run=selection.parent_run,
                            stage_parents=selection.stage_parents, unreadable=unreadable, source=source)
    except MlvizError as exc:
        if str(exc).startswith("no run left to analyse") and " unfinished" in str(exc) and hint:
            raise MlvizError(f"{exc}{hint}") from None
        raise
    if len(sweep.runs) == 0:
        reasons = ", ".join(f"{v} {k}" for k, v in sweep.exclusion_counts().items()) or "none matched"
        unfinished = hint if "unfinished" in sweep.exclusion_counts() else ""
        raise MlvizError(f"no run left to analyse in experiment '{exp.name}' ({reasons}){unfinished}")
    return sweep, exp


def load_sweep(tracking_uri: str | None = None, experiment: str | None = None, **kw) -> Sweep:
    """Notebook entry point: open the store, read the selection, return the typed Sweep."""
    from mlviz.store.read import Store

    with Store(tracking_uri) as store:
        sweep, _ = read_sweep(store, RunSelection(tracking_uri=tracking_uri, experiment=experiment, **kw))
    return sweep


# --------------------------------------------------------------------------- compute
def analyse(sweep: Sweep, options: SweepOptions | dict | None = None, sections: Sequence[str] | None = None,
            on_step: Callable[[str], None] | None = None, histories: pd.DataFrame | None = None) -> Report:
    """Every registered sweep figure that applies, as figures-as-data; the others skipped with their reason.

    `histories`: metric histories (long table) of the stage-2 runs, for learning curves."""
    opts = options if isinstance(options, SweepOptions) else SweepOptions(
        **{k: v for k, v in (options or {}).items() if k in SweepOptions.__dataclass_fields__})
    ctx = Context(sweep, opts, histories=histories)
    specs = [spec for spec in REGISTRY + extra_specs(SECTIONS) if not sections or spec.section in sections]
    report = compute_figures("visualize", specs, ctx, on_step)
    report.summary["sweep"] = sweep.describe()
    return report


def fingerprint(sweep: Sweep, options: dict, selection_key: str) -> str:
    """Changes when the runs, the options or mlviz change; equal fingerprints mean equal output."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(sweep.runs.astype(str), index=False).to_numpy().tobytes())
    h.update(json.dumps([sweep.objective, sweep.mode, options, selection_key, mlviz.__version__,
                         [e.__dict__ for e in sweep.excluded if e.reason != "mlviz analysis run"]],
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


# --------------------------------------------------------------------------- all of it
@dataclass
class Outcome:
    run_id: str | None
    folder: Path | None
    up_to_date: bool
    summary: dict


def visualize_sweep(selection: RunSelection, out: str | Path | None = None, options: dict | None = None,
                    force: bool = False, progress: bool = False, echo: Callable[[str], None] = print) -> Outcome:
    """Read the selection, analyse, publish into its analysis run (or `out`), then the best model's report."""
    from mlviz.store.read import Store
    from mlviz.store.write import Writer

    options = {"n_boot": 500, "seed": 0, "top_k": 10, **(options or {})}
    sweep_options = {k: options[k] for k in SweepOptions.__dataclass_fields__}
    with Store(selection.tracking_uri) as store:
        sweep, exp = read_sweep(store, selection, progress)
        key = selection.key(exp.experiment_id)
        fp = fingerprint(sweep, sweep_options, key)
        if out is None:
            target = Writer(store).find_analysis(exp.experiment_id, "visualize", key, fp)
            if target.up_to_date and not force:
                echo(f"up to date: analysis run {target.run_id} already holds this analysis (--force to redo)")
                return Outcome(target.run_id, None, True, {})
            dest = AnalysisRun(store, exp.experiment_id, key, fp, target=target)
        else:
            if not force and _folder_fingerprint(Path(out)) == fp:
                echo(f"up to date: {Path(out) / 'mlviz'} already holds this analysis (--force to redo)")
                return Outcome(None, Path(out) / "mlviz", True, {})
            dest = ToFolder(out)

        stage2_ids = sweep.runs.loc[sweep.runs["stage"] == 2, "run_id"].tolist()
        histories = _histories(store, stage2_ids, sweep.metrics, progress) if stage2_ids else None
        bar = progress_bar(len(REGISTRY), "analysing", progress)
        report = analyse(sweep, sweep_options, on_step=lambda s: bar.update(1), histories=histories)
        bar.close()
        best = sweep.best(1)
        best_stage = 2 if (sweep.runs["stage"] == 2).any() else 1
        best_model_id = str(sweep.stage(best_stage).best(1)["run_id"].iloc[0])
        selection_summary = {
            "tracking_uri": store.uri, "experiment_id": exp.experiment_id, "experiment_name": exp.name,
            "parent_run": selection.parent_run, "filter": selection.filter_string,
            "statuses": list(selection.statuses), "final": selection.final, "selection_key": key}
        report.summary.update({"selection": selection_summary, "fingerprint": fp, "options": options})
        report.tags = {"mlviz.selection_key": key, "mlviz.experiment": exp.name, "mlviz.objective": sweep.objective,
                       "mlviz.mode": sweep.mode, "mlviz.best_run_id": str(best["run_id"].iloc[0]),
                       "mlviz.version": mlviz.__version__,
                       "mlviz.selection": json.dumps(selection_summary)[:5000]}
        report.metrics = {"mlviz.n_runs": len(sweep.runs), "mlviz.n_excluded": len(sweep.excluded),
                          f"mlviz.best.{sweep.objective}": float(best[METRIC_PREFIX + sweep.objective].iloc[0])}
        from mlviz.sections.model import find_predictions

        model_report = options.get("best_model", True) and \
            find_predictions(store.artifact_paths(best_model_id))[0] is not None
        if model_report:
            report.related = [Related("best model's report", best_model_id, exp.experiment_id)]
        report.notes = [f"note: {n}" for n in sweep.notes]
        counts = sweep.exclusion_counts()
        if counts:
            report.notes.append("runs left out: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        report.metrics["mlviz.n_figures"] = sum(f.draw is not None for f in report.figures)
        outcome = publish(report, dest, echo=echo, progress=progress,
                          headline=f"analysed {len(sweep.runs)} runs of objective '{sweep.objective}' ({sweep.mode})")
        if model_report:
            _best_model_of_sweep(store, best_model_id, out, {**options, "progress": progress}, echo, outcome.run_id,
                                 exp.experiment_id)
        elif options.get("best_model", True):
            echo(f"  best model: run {best_model_id} logged no predictions, so no best_model/ section")
    return Outcome(outcome.run_id, outcome.folder, False, outcome.summary)


def _best_model_of_sweep(store, best_id: str, out, options: dict, echo, analysis_run: str | None,
                         experiment_id: str) -> None:
    """Diagnostics (and heatmaps, when it logged a model) for the sweep's best run (stage 2 if there is
    one), when it logged predictions. options["heatmaps"]: False for none, or heatmap options."""
    from mlviz.sections.model import best_model

    cams = options.get("heatmaps", {})
    cams = None if cams is False else {"fallback": "occlusion", "seed": options.get("seed", 0), **(cams or {})}
    related = [Related("the sweep's analysis", analysis_run, experiment_id)] if analysis_run else []
    try:
        best_model(best_id, store=store, out=out, options={"n_boot": options.get("n_boot", 500),
                                                          "group_id": options.get("group_id")}, echo=echo,
                   heatmaps=cams, related=related, progress=options.get("progress", False),
                   embedding=None if options.get("embedding") is False else {"seed": options.get("seed", 0)})
    except MlvizError as exc:
        echo(f"  best model: run {best_id}: {exc}")


def _folder_fingerprint(out: Path) -> str | None:
    try:
        return json.loads((out / "mlviz" / "summary.json").read_text()).get("fingerprint")
    except (OSError, ValueError):
        return None
