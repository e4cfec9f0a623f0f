"""plan → compute → render → log, for one selection of runs.

Each step is a public function so notebooks can stop anywhere:
`load_sweep` (store → Sweep), `analyse` (Sweep → results), `render_report` (results → folder of
PNG/JSON/CSV + summary.json + index.html), `visualize` (all of it, logged to MLflow or written to --out).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import mlviz
from mlviz.analysis import NotApplicable
from mlviz.analysis.stats import to_jsonable
from mlviz.errors import MlvizError
from mlviz.figures import REGISTRY, Context, compute_all
from mlviz.sweep import ANALYSIS_TAG, METRIC_PREFIX, Sweep, build_sweep, default_direction

CSV_ROWS = 200  # DataFrames longer than this go to a CSV beside the JSON


@dataclass
class Selection:
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


@dataclass
class Report:
    """Computed results by (section, file stem), the figure specs behind them, and what was skipped."""

    sweep: Sweep | None  # None for a single model's diagnostics
    results: dict[tuple[str, str], Any]
    captions: dict[tuple[str, str], str]
    renderers: dict[tuple[str, str], Any]
    skipped: list[dict]


# --------------------------------------------------------------------------- load
def _best_of_history(store, records: list[dict], progress: bool) -> None:
    """Replace each metric's last value with the best value of its history (min for losses)."""
    run_ids = [r["run_id"] for r in records]
    keys = sorted({k for r in records for k in r["metrics"]})
    hist = store.histories(run_ids, keys, progress=lambda n: _progress(n, "reading histories", progress))
    if hist.empty:
        return
    best = {}
    for key, group in hist.groupby("key"):
        agg = group.groupby("run_id")["value"].min() if default_direction(key) == "min" else \
            group.groupby("run_id")["value"].max()
        best[key] = agg.to_dict()
    for r in records:
        for key in r["metrics"]:
            if r["run_id"] in best.get(key, {}):
                r["metrics"][key] = float(best[key][r["run_id"]])


def read_sweep(store, selection: Selection, progress: bool = False) -> tuple[Sweep, Any]:
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
    sweep = build_sweep(
        records, objective=selection.metric, mode=selection.mode, statuses=selection.statuses,
        parent_run=selection.parent_run, stage_parents=selection.stage_parents, unreadable=unreadable,
        source={"tracking_uri": store.uri, "experiment_id": exp.experiment_id, "experiment_name": exp.name},
    )
    if len(sweep.runs) == 0:
        reasons = ", ".join(f"{v} {k}" for k, v in sweep.exclusion_counts().items()) or "none matched"
        raise MlvizError(f"no run left to analyse in experiment '{exp.name}' ({reasons})")
    return sweep, exp


def load_sweep(tracking_uri: str | None = None, experiment: str | None = None, **kw) -> Sweep:
    """Notebook entry point: open the store, read the selection, return the typed Sweep."""
    from mlviz.store.read import Store

    with Store(tracking_uri) as store:
        sweep, _ = read_sweep(store, Selection(tracking_uri=tracking_uri, experiment=experiment, **kw))
    return sweep


# --------------------------------------------------------------------------- compute
def analyse(sweep: Sweep, options: dict | None = None, sections: Sequence[str] | None = None,
            on_step: Callable[[str], None] | None = None, histories: pd.DataFrame | None = None) -> Report:
    """Run every registered analysis that applies; record the others as skipped with their reason.

    `histories`: metric histories (long table) of the stage-2 runs, for learning curves."""
    ctx = Context(sweep, dict(options or {}), histories=histories)
    specs = [spec for spec in REGISTRY if not sections or spec.section in sections]
    return Report(sweep, *compute_all(specs, ctx, on_step))


# --------------------------------------------------------------------------- render
def _write_numbers(path: Path, result: Any) -> list[str]:
    """The figure's numbers as JSON; long tables as CSV beside it (referenced from the JSON)."""
    data = to_jsonable(result) if not isinstance(result, dict) else {k: to_jsonable(v) for k, v in result.items()}
    written = [path.with_suffix(".json").name]
    if hasattr(result, "__dataclass_fields__"):
        for name in result.__dataclass_fields__:
            value = getattr(result, name)
            if isinstance(value, pd.DataFrame) and len(value) > CSV_ROWS:
                csv = path.with_name(f"{path.stem}.csv" if name in ("table", "coords") else f"{path.stem}_{name}.csv")
                value.to_csv(csv, index=False)
                data[name] = {"csv": csv.name, "rows": len(value)}
                written.append(csv.name)
    path.with_suffix(".json").write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")
    return written


def render_report(report: Report, folder: str | Path, summary: dict | None = None,
                  on_step: Callable[[str], None] | None = None, more_figures: Sequence[dict] = ()) -> Path:
    """Write `folder/mlviz/<section>/<name>.png` + numbers, summary.json and index.html.

    `more_figures`: figures already written under `folder` by another pipeline (e.g. heatmaps), as
    {section, file, caption}, listed in the summary and the index after the report's own."""
    import matplotlib.pyplot as plt

    from mlviz.render.html import write_index

    root = Path(folder)
    figures, skipped = [], list(report.skipped)
    for (section, stem), result in report.results.items():
        if on_step:
            on_step(f"{section}/{stem}")
        out = root / "mlviz" / section
        out.mkdir(parents=True, exist_ok=True)
        spec = report.renderers[(section, stem)]
        try:
            fig = spec.render(result)
        except NotApplicable as exc:
            skipped.append({"section": section, "figure": stem, "reason": str(exc)})
            continue
        fig.savefig(out / f"{stem}.png")
        plt.close(fig)
        _write_numbers(out / f"{stem}.png", result)
        figures.append({"section": section, "file": f"mlviz/{section}/{stem}.png",
                        "caption": report.captions[(section, stem)]})
    figures += list(more_figures)
    summary = dict(summary or {})
    if report.sweep is not None:
        summary.setdefault("sweep", report.sweep.describe())
    summary["figures_made"] = [f["file"] for f in figures]
    summary["figures_skipped"] = skipped
    summary["versions"] = _versions()
    (root / "mlviz").mkdir(parents=True, exist_ok=True)
    (root / "mlviz" / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=1), encoding="utf-8")
    write_index(root, figures, summary)
    return root / "mlviz"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"mlviz": mlviz.__version__, "python": platform.python_version()}
    for pkg in ("mlflow", "pandas", "numpy", "scikit-learn", "matplotlib", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


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


def visualize(selection: Selection, out: str | Path | None = None, options: dict | None = None,
              force: bool = False, progress: bool = False, echo: Callable[[str], None] = print) -> Outcome:
    """Read the selection, analyse, render, then log into MLflow (or write to `out`)."""
    from mlviz.store.read import Store

    options = {"n_boot": 500, "seed": 0, "top_k": 10, **(options or {})}
    started = time.perf_counter()
    with Store(selection.tracking_uri) as store:
        sweep, exp = read_sweep(store, selection, progress)
        key = selection.key(exp.experiment_id)
        fp = fingerprint(sweep, options, key)
        target = None
        if out is None:
            from mlviz.store import sink

            client = store.writer()
            target = sink.find_target(client, exp.experiment_id, key, fp)
            if target.up_to_date and not force:
                echo(f"up to date: analysis run {target.run_id} already holds this analysis (--force to redo)")
                return Outcome(target.run_id, None, True, {})
        elif not force and _folder_fingerprint(Path(out)) == fp:
            echo(f"up to date: {Path(out) / 'mlviz'} already holds this analysis (--force to redo)")
            return Outcome(None, Path(out) / "mlviz", True, {})

        stage2_ids = sweep.runs.loc[sweep.runs["stage"] == 2, "run_id"].tolist()
        histories = store.histories(stage2_ids, sweep.metrics, progress=lambda n: _progress(
            n, "reading histories", progress)) if stage2_ids else None
        bar = _progress(len(REGISTRY), "analysing", progress)
        report = analyse(sweep, options, on_step=lambda s: bar.update(1), histories=histories)
        bar.close()
        summary = {
            "selection": {"tracking_uri": store.uri, "experiment_id": exp.experiment_id,
                          "experiment_name": exp.name, "parent_run": selection.parent_run,
                          "filter": selection.filter_string, "statuses": list(selection.statuses),
                          "final": selection.final, "selection_key": key},
            "fingerprint": fp,
            "options": options,
        }
        tmp = Path(tempfile.mkdtemp(prefix="mlviz-render-"))
        try:
            bar = _progress(len(report.results), "rendering", progress)
            folder = render_report(report, tmp, summary, on_step=lambda s: bar.update(1))
            bar.close()
            summary = json.loads((folder / "summary.json").read_text())
            made = len(summary["figures_made"])
            if out is not None:
                dest = Path(out) / "mlviz"
                if dest.exists():
                    shutil.rmtree(dest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(folder), dest)
                run_id, where = None, str(dest)
            else:
                best = sweep.best(1)
                tags = {ANALYSIS_TAG: "visualize", "mlviz.selection_key": key,
                        "mlviz.experiment": exp.name, "mlviz.objective": sweep.objective, "mlviz.mode": sweep.mode,
                        "mlviz.best_run_id": str(best["run_id"].iloc[0]), "mlviz.version": mlviz.__version__,
                        "mlviz.selection": json.dumps(summary["selection"])[:5000]}
                metrics = {"mlviz.n_runs": len(sweep.runs), "mlviz.n_excluded": len(sweep.excluded),
                           "mlviz.n_figures": made,
                           f"mlviz.best.{sweep.objective}": float(best[METRIC_PREFIX + sweep.objective].iloc[0])}
                run_id = sink.log_report(client, tmp, experiment_id=exp.experiment_id, target=target,
                                         tags=tags, metrics=metrics, fingerprint=fp)
                where = f"run {run_id} (experiment '{exp.name}')"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        echo(_closing_lines(sweep, made, summary["figures_skipped"], where, time.perf_counter() - started))
        if options.get("best_model", True):
            _best_model_of_sweep(store, sweep, out, options, echo)
    return Outcome(run_id, Path(out) / "mlviz" if out else None, False, summary)


def _best_model_of_sweep(store, sweep: Sweep, out, options: dict, echo) -> None:
    """Diagnostics (and heatmaps, when it logged a model) for the sweep's best run (stage 2 if there is
    one), when it logged predictions. options["heatmaps"]: False for none, or heatmap options."""
    from mlviz.model_pipeline import best_model, find_predictions

    stage = 2 if (sweep.runs["stage"] == 2).any() else 1
    best_id = str(sweep.stage(stage).best(1)["run_id"].iloc[0])
    if find_predictions(store.artifact_paths(best_id))[0] is None:
        echo(f"  best model: run {best_id} logged no predictions, so no best_model/ section")
        return
    cams = options.get("heatmaps", {})
    cams = None if cams is False else {"fallback": "occlusion", "seed": options.get("seed", 0), **(cams or {})}
    try:
        best_model(best_id, store=store, out=out, options={"n_boot": options.get("n_boot", 500)}, echo=echo,
                   heatmaps=cams)
    except MlvizError as exc:
        echo(f"  best model: run {best_id}: {exc}")


def _folder_fingerprint(out: Path) -> str | None:
    try:
        return json.loads((out / "mlviz" / "summary.json").read_text()).get("fingerprint")
    except (OSError, ValueError):
        return None


def _closing_lines(sweep: Sweep, made: int, skipped: list[dict], where: str, seconds: float) -> str:
    lines = [f"analysed {len(sweep.runs)} runs of objective '{sweep.objective}' ({sweep.mode}); "
             f"{made} figures written to {where} in {seconds:.1f} s"]
    for note in sweep.notes:
        lines.append(f"  note: {note}")
    counts = sweep.exclusion_counts()
    if counts:
        lines.append("  runs left out: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    grouped: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        grouped.setdefault((s["section"], s["reason"]), []).append(s["figure"])
    for (section, reason), names in grouped.items():
        what = names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"
        lines.append(f"  skipped {section}/{what}: {reason}")
    return "\n".join(lines)


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="fig", leave=False)
