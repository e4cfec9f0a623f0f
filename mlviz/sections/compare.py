"""The compare/ section: several runs' predictions, or several sweeps, side by side.

    compare_runs_report(inputs, histories, options)   # RunInput per run → Report(kind="compare")
    compare_sweeps_report(sweeps, histories, options)  # (label, Sweep) per sweep → Report(kind="compare")
    run_compare(tracking_uri, run_ids=[...] | sweeps=[RunSelection, ...], out=None)   # read, compare, publish

The report is published into a comparison run (`mlviz-compare`, tag `mlviz.analysis=compare`, found again
by its selection key) of the first run's (or sweep's) experiment, or written to `--out`. It links every
run it compared (tags and its index.html), logs the metrics table with `mlflow.log_table`, and leaves
the compared runs untouched.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import mlviz
from mlviz.errors import MlvizError
from mlviz.report import Figure, Related, Report

SECTION = "compare"
RC = "mlviz.render.compare"
DEFAULTS = {"n_boot": 1000, "seed": 0, "level": 0.95, "n_bins": 15, "reference": "best"}


def _draw(name: str) -> Callable:
    """A renderer by name, imported only when the figure is drawn (matplotlib stays out of the import)."""

    def draw(data):
        import importlib

        return getattr(importlib.import_module(RC), name)(data)

    draw.__name__ = name
    return draw


# --------------------------------------------------------------------------- runs
def compare_runs_report(inputs, histories: pd.DataFrame | None = None, options: dict | None = None,
                        skipped_runs: Sequence[dict] = (), pages: dict[str, str | None] | None = None) -> Report:
    """ROC, PR and calibration overlaid, the metrics table and learning curves of several runs.

    `inputs`: `mlviz.analysis.compare.RunInput` per run; `skipped_runs`: runs that could not be read
    ({"run", "run_id", "reason"}), listed as skipped; `pages`: run id → the page its link opens (its
    mlviz/index.html when it has one, None: the run itself; default mlviz/index.html)."""
    from mlviz.analysis import NotApplicable
    from mlviz.analysis.compare import compare_runs, run_learning_curves, unique_labels
    from mlviz.figures.model import headline_metrics

    o = {**DEFAULTS, **(options or {})}
    report = Report(kind="compare")
    for s in skipped_runs:
        report.skip(SECTION, f"run {s['run']}", s["reason"])
    if len(inputs) == 0:
        raise MlvizError("none of the runs has predictions to compare: "
                         + "; ".join(f"{s['run']}: {s['reason']}" for s in skipped_runs))
    result = compare_runs(list(inputs), headline=headline_metrics, n_boot=o["n_boot"], seed=o["seed"],
                          level=o["level"], n_bins=o["n_bins"], reference=o["reference"])
    for s in result.skipped:
        what = {"roc_curve": "roc_curves", "precision_recall": "precision_recall_curves",
                "calibration": "calibration_curves"}.get(s["figure"], s["figure"])
        report.skip(SECTION, f"{what} of run {s['run']}" if what != "all" else f"run {s['run']}", s["reason"])
    n_runs = len(result.runs)
    if result.roc is not None:
        report.figures.append(Figure(
            SECTION, "roc_curves",
            f"ROC curves of the {n_runs} runs overlaid, one colour per run; legend: AUC with its "
            f"{o['level']:.0%} bootstrap interval and n. Runs of another task (binary / multi-class) get "
            "their own panel; a multi-class run is drawn as its macro-average curve with the mean one-vs-rest "
            "AUC; binary runs with their pointwise bootstrap band.",
            result.roc, _draw("plot_roc_curves")))
    if result.pr is not None:
        report.figures.append(Figure(
            SECTION, "precision_recall_curves",
            "Precision-recall curves overlaid with average precision (interval, n) per run and the no-skill "
            "precision; multi-class runs as their macro-average curve with the mean one-vs-rest AP.",
            result.pr, _draw("plot_pr_curves")))
    if result.calibration is not None:
        report.figures.append(Figure(
            SECTION, "calibration_curves",
            "Reliability diagrams overlaid (equal-width bins, as best_model/calibration) with each run's "
            "ECE and its interval; below, the samples per bin. Binary: positive-class probability; "
            "multi-class: top-label confidence against accuracy.",
            result.calibration, _draw("plot_calibration_curves")))
    table = result.metrics.table
    report.figures.append(Figure(
        SECTION, "metrics_table",
        "Each run's headline numbers (equal to the mlviz.* metrics `mlviz best-model` logs) with bootstrap "
        "intervals, and each run's difference to the reference run of its group with the interval of the "
        "difference: paired bootstrap on the samples matched by id where the predictions share sample ids, "
        "unpaired otherwise; coloured where the interval excludes 0 (larger than the noise).",
        result.metrics, _draw("plot_metrics_table"), files={"metrics_table.csv": table.to_csv(index=False)}))
    labels = unique_labels(list(inputs))
    labels_ids = [(lab, r.run_id) for lab, r in zip(labels, inputs, strict=True)]
    try:
        curves = run_learning_curves(histories, labels_ids)
        report.figures.append(Figure(
            SECTION, "learning_curves",
            "Each run's logged metric histories overlaid (one panel per metric logged at several steps, "
            "losses first).", curves, _draw("plot_learning_curves")))
    except NotApplicable as exc:
        report.skip(SECTION, "learning_curves", str(exc))
    report.tables = {"compare_metrics": table}
    ids = list(dict.fromkeys(r.run_id for r in inputs))
    report.tags = {"mlviz.compared_runs": ",".join(ids), "mlviz.compare.kind": "runs",
                   "mlviz.version": mlviz.__version__}
    refs = [g["reference"] for g in result.groups if len(g["runs"]) > 1]
    if refs:
        report.tags["mlviz.compare.reference"] = dict(labels_ids)[refs[0]]
    seen = set()
    for lab, r in zip(labels, inputs, strict=True):
        if r.run_id not in seen:
            seen.add(r.run_id)
            page = (pages or {}).get(r.run_id, "mlviz/index.html")
            report.related.append(Related(f"{lab} ({r.predictions.task})", r.run_id, r.experiment_id, page))
    diffs = result.metrics.differences
    report.metrics = {"mlviz.compare.n_runs": float(n_runs),
                      "mlviz.compare.n_skipped_runs": float(len(skipped_runs)),
                      "mlviz.compare.n_differences_beyond_noise": float(diffs["significant"].sum()) if len(diffs)
                      else 0.0}
    report.summary = {"compare": {"kind": "runs", "runs": result.runs, "groups": result.groups,
                                  "headline_metrics": result.headline, "skipped_runs": list(skipped_runs),
                                  "options": o}}
    for g in result.groups:
        if len(g["runs"]) > 1:
            sig = diffs[(diffs["group"] == g["group"]) & diffs["significant"]]
            report.notes.append(f"{g['group']}: {len(g['runs'])} runs against reference {g['reference']}; "
                                f"{len(sig)} differences larger than the noise"
                                + (f" ({_tests(diffs, g['group'])})" if len(diffs) else ""))
    return report


def _tests(diffs: pd.DataFrame, group: str) -> str:
    sub = diffs[diffs["group"] == group].drop_duplicates("run")
    return ", ".join(f"{t}: {n}" for t, n in sub["test"].value_counts().items())


# --------------------------------------------------------------------------- sweeps
def compare_sweeps_report(sweeps, histories: dict[str, pd.DataFrame] | None = None,
                          options: dict | None = None) -> Report:
    """Importance side by side, learning curves overlaid and stage agreement of several sweeps."""
    from mlviz.analysis.compare import compare_sweeps

    o = {**DEFAULTS, "n_boot": 500, **(options or {})}
    result = compare_sweeps(list(sweeps), histories, n_boot=o["n_boot"], seed=o["seed"])
    report = Report(kind="compare")
    for s in result.skipped:
        report.skip(SECTION, s["figure"] if s["sweep"] == "all" else f"{s['figure']} of {s['sweep']}", s["reason"])
    n = len(result.sweeps)
    if result.importance is not None:
        report.figures.append(Figure(
            SECTION, "importance",
            f"Parameter importance of the {n} sweeps side by side (ω² with 95% bootstrap intervals, each on its "
            "own stage-1 runs and objective), parameters in one order.", result.importance,
            _draw("plot_importance_comparison")))
    if result.curves is not None:
        report.figures.append(Figure(
            SECTION, "learning_curves",
            "Learning curves of each sweep's best configuration overlaid (stage 2: mean over its seeds with the "
            "min–max band; a one-stage sweep: its best run).", result.curves, _draw("plot_learning_curves")))
    if result.agreement is not None:
        report.figures.append(Figure(
            SECTION, "stage_agreement",
            "Stage-1 against stage-2 score of each sweep's candidates, with Spearman ρ and Kendall τ (95% "
            "bootstrap intervals), top-k overlap and the regret of picking by the stage-1 score.",
            result.agreement, _draw("plot_stage_agreement")))
    if not report.figures:
        raise MlvizError("nothing to compare: " + "; ".join(f"{s['sweep']}: {s['reason']}" for s in result.skipped))
    report.tags = {"mlviz.compare.kind": "sweeps", "mlviz.version": mlviz.__version__,
                   "mlviz.compared_sweeps": json.dumps([s["sweep"] for s in result.sweeps])[:5000]}
    report.metrics = {"mlviz.compare.n_sweeps": float(n)}
    report.summary = {"compare": {"kind": "sweeps", "sweeps": result.sweeps, "options": o}}
    return report


# --------------------------------------------------------------------------- reading and publishing
@dataclass
class CompareOutcome:
    run_id: str | None
    folder: Path | None
    made: list[str]
    skipped: list[dict]
    up_to_date: bool = False
    summary: dict = field(default_factory=dict)


def read_run_inputs(store, run_ids: Sequence[str], predictions: str | None = None,
                    column_map=None, group_column: str | None = None) -> tuple[list, list[dict], dict[str, dict]]:
    """(RunInput per run with readable predictions, skipped runs with reasons, run records; a record's
    "page" is its mlviz/index.html when it has one). Every run id is checked before anything is
    downloaded: an unknown id is an error, not a skipped run. `group_column` (`--group-id`): the column
    whose groups the bootstrap resamples, "none" for rows, None to detect; a run whose predictions lack
    the named column is an error, not a skipped run."""
    from mlviz.analysis.compare import RunInput
    from mlviz.analysis.predictions import NO_GROUPING, predictions_from_frame
    from mlviz.sections.model import find_predictions, read_table

    records = {rid: store.run(rid) for rid in dict.fromkeys(run_ids)}  # MlvizError for an unknown run
    inputs, skipped, cache = [], [], {}
    tmp = Path(tempfile.mkdtemp(prefix="mlviz-compare-"))
    try:
        for rid in run_ids:
            rec = records[rid]
            name = rec["run_name"] or rid[:8]
            if rid in cache:
                preds = cache[rid]
            else:
                try:
                    paths = store.artifact_paths(rid)
                    rec["page"] = "mlviz/index.html" if "mlviz/index.html" in paths else None
                    final, _ = find_predictions(paths, predictions)
                    if final is None:
                        raise MlvizError("logged no predictions artifact (looked for predictions/val_predictions.csv "
                                         "and any *predictions* CSV/Parquet; --predictions PATH names another)")
                    src = tmp / rid
                    for p in (final, str(Path(final).parent / "contract.json")):
                        if p in paths:
                            store.download(rid, p, src / Path(p).parent)
                    contract_path = src / Path(final).parent / "contract.json"
                    contract = json.loads(contract_path.read_text()) if contract_path.exists() and column_map is None \
                        else None
                    frame = read_table(src / final)
                    named = group_column is not None and group_column.strip().lower() not in NO_GROUPING
                    if named and group_column not in frame.columns:
                        raise _GroupColumnMissing(f"--group-id: run {name} ({rid}) has no column '{group_column}' "
                                                  f"in {final} (columns: {', '.join(map(str, frame.columns[:15]))})")
                    preds = predictions_from_frame(frame, column_map=column_map, contract=contract,
                                                   group_column=group_column)
                except _GroupColumnMissing:
                    raise
                except MlvizError as exc:
                    skipped.append({"run": name, "run_id": rid, "reason": str(exc)})
                    cache[rid] = None
                    continue
                cache[rid] = preds
            if preds is not None:
                inputs.append(RunInput(rid, name, preds, rec["experiment_id"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return inputs, skipped, records


class _GroupColumnMissing(MlvizError):
    """An explicit --group-id that a run's predictions lack: the user's error, not a run to skip."""


def _history_keys(records: dict[str, dict]) -> list[str]:
    keys = {k for r in records.values() for k in r["metrics"]}
    return sorted(k for k in keys if not k.startswith(("mlviz.", "stage1_", "quick_")))


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def run_compare(tracking_uri: str | None = None, run_ids: Sequence[str] = (), sweeps: Sequence = (),
                experiment: str | None = None, out: str | Path | None = None, options: dict | None = None,
                predictions: str | None = None, force: bool = False, progress: bool = False,
                echo: Callable[[str], None] = print) -> CompareOutcome:
    """Compare runs (`run_ids`, two or more) or sweeps (`sweeps`: `RunSelection`s, two or more), publish
    into the comparison run of the first run's experiment (or `experiment`), or into `out`."""
    from mlviz.publish import AnalysisRun, ToFolder, progress_bar, publish
    from mlviz.store.read import Store
    from mlviz.store.write import Writer

    o = {**DEFAULTS, **({"n_boot": 500} if sweeps and not run_ids else {}), **(options or {})}
    if bool(run_ids) == bool(sweeps):
        raise MlvizError("compare either runs (--run ID, twice or more) or sweeps (--experiment/--parent-run/"
                         "--filter, two or more), not both")
    if run_ids and len(run_ids) < 2:
        raise MlvizError(f"compare needs at least two runs (--run ID --run ID), got {len(run_ids)}")
    if sweeps and len(sweeps) < 2:
        raise MlvizError(f"compare needs at least two sweeps, got {len(sweeps)}")
    with Store(tracking_uri) as store:
        if out is None:
            Writer(store)  # refuse before computing anything when the store cannot be written
        if run_ids:
            ref = o["reference"]
            if ref not in ("best", "first") and ref not in run_ids:
                raise MlvizError(f"--reference must be best, first or one of the compared run ids, not '{ref}'")
            inputs, skipped_runs, records = read_run_inputs(store, list(run_ids), predictions,
                                                            group_column=o.get("group_id"))
            first = records[run_ids[0]]
            exp_id = store.experiment(experiment).experiment_id if experiment else first["experiment_id"]
            rids = list(records)
            hist = store.histories(rids, _history_keys(records),
                                   progress=lambda n: progress_bar(n, "reading histories", progress, unit="req"))
            key = _digest({"kind": "compare-runs", "runs": list(run_ids), "predictions": predictions})[:16]
            # o (the fingerprint below) holds group_id when given: another grouping is another comparison
            fp = _digest([key, o, mlviz.__version__,
                          [(r["run_id"], r["end_time"], sorted(r["metrics"].items())) for r in records.values()]])[:24]
            pages = {rid: rec.get("page") for rid, rec in records.items()}
            make = lambda: compare_runs_report(inputs, hist, o, skipped_runs, pages)  # noqa: E731
            what = f"comparison of {len(run_ids)} runs"
        else:
            from mlviz.sections.sweep import read_sweep

            pairs, exp_ids, keys, hists = [], [], [], {}
            for sel in sweeps:
                sweep, exp = read_sweep(store, sel, progress)
                label = exp.name + (f" / {sel.parent_run}" if sel.parent_run else "") + \
                    (f" [{sel.filter_string}]" if sel.filter_string else "")
                while label in dict(pairs):
                    label += "'"
                pairs.append((label, sweep))
                exp_ids.append(exp.experiment_id)
                keys.append(sel.key(exp.experiment_id))
                s2 = sweep.runs.loc[sweep.runs["stage"] == 2, "run_id"].tolist()
                ids = s2 or [str(sweep.best(1)["run_id"].iloc[0])]
                hists[label] = store.histories(ids, sweep.metrics, progress=lambda n: progress_bar(
                    n, "reading histories", progress, unit="req"))
            exp_id = store.experiment(experiment).experiment_id if experiment else exp_ids[0]
            key = _digest({"kind": "compare-sweeps", "sweeps": keys})[:16]
            fp = _digest([key, o, mlviz.__version__] + [
                pd.util.hash_pandas_object(s.runs.astype(str), index=False).sum() for _, s in pairs])[:24]
            make = lambda: compare_sweeps_report(pairs, hists, o)  # noqa: E731
            what = f"comparison of {len(sweeps)} sweeps"
        if out is None:
            target = Writer(store).find_analysis(exp_id, "compare", key, fp)
            if target.up_to_date and not force:
                echo(f"up to date: comparison run {target.run_id} already holds this comparison (--force to redo)")
                return CompareOutcome(target.run_id, None, [], [], True)
            dest = AnalysisRun(store, exp_id, key, fp, run_name="mlviz-compare", target=target)
        else:
            dest = ToFolder(out)
        report = make()
        report.summary.setdefault("compare", {}).update({"selection_key": key, "fingerprint": fp})
        report.summary["tracking_uri"] = store.uri
        done = publish(report, dest, echo=echo, progress=progress, headline=what)
    return CompareOutcome(done.run_id, done.folder, done.made, done.skipped, False, done.summary)
