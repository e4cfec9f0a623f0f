"""The one road from figures-as-data to the user: draw, save the numbers beside each figure, summarise,
index, then write to a folder (`--out`) or log through the store's writer.

Every section (sweep, best model, training progress, heatmaps, embedding, comparison) hands a
`mlviz.report.Report` to `publish`; nothing else draws, writes report files or logs figures.

    publish(report, ToFolder("figures/"))                 # files only
    publish(report, IntoRun(store, run_id))                # into an existing run (the model's own run)
    publish(report, AnalysisRun(store, exp_id, key, fp))   # the analysis run of a selection, found or made
    publish_step(figure, epoch, IntoRun(store, run_id))    # one figure of a run in progress, by step

Figures are drawn in parallel processes (forked, so nothing needs pickling) when there are enough of them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlviz
from mlviz.analysis import NotApplicable
from mlviz.analysis.stats import to_jsonable
from mlviz.report import Figure, Report

CSV_ROWS = 200  # DataFrames longer than this go to a CSV beside the JSON
OWNERS = ("visualize", "compare")  # reports that own their run's index.html and summary.json
MODEL = "best_model"  # owns the model run's index.html; its summary is best_model_summary.json


# --------------------------------------------------------------------------- destinations
@dataclass
class ToFolder:
    """`<path>/mlviz/...`; the sections the report owns are replaced, other files are kept."""

    path: str | Path


@dataclass
class IntoRun:
    """An existing run (e.g. the model's own): its sections replaced, metrics and tags added."""

    store: Any  # mlviz.store.read.Store
    run_id: str


@dataclass
class AnalysisRun:
    """The analysis run of a selection: MLFLOW_RUN_ID's run, else the run tagged with this selection key,
    else a new one. It reads 'incomplete' until every file landed."""

    store: Any
    experiment_id: str
    selection_key: str
    fingerprint: str
    run_name: str = "mlviz-visualize"
    target: Any = None  # a mlviz.store.write.Target already looked up (visualize checks it first)


@dataclass
class PublishOutcome:
    run_id: str | None
    folder: Path | None
    made: list[str]
    skipped: list[dict]
    summary: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- file names
def top_files(kind: str, index_taken_by: str | None = None) -> tuple[str, str]:
    """(summary, index) file names under mlviz/ for a report of this kind."""
    if kind in OWNERS:
        return "summary.json", "index.html"
    if kind == MODEL:
        index = "index.html" if index_taken_by in (None, MODEL) else f"{MODEL}_index.html"
        return f"{MODEL}_summary.json", index
    return f"{kind}_summary.json", f"{kind}_index.html"


def _index_owner(path: Path) -> str | None:
    """Which kind of report wrote an existing index.html (its mlviz-report meta tag), if any."""
    if not path.is_file():
        return None
    head = path.read_text(encoding="utf-8", errors="replace")[:4000]
    marker = 'name="mlviz-report" content="'
    at = head.find(marker) if marker in head else head.find(marker.replace('"', "'"))
    if at < 0:
        return "unknown"
    rest = head[at + len(marker):]
    return rest[: min(i for i in (rest.find('"'), rest.find("'"), len(rest)) if i >= 0)]


# --------------------------------------------------------------------------- drawing
def write_numbers(path: Path, data: Any) -> list[str]:
    """The figure's numbers as JSON; long tables as CSV beside it (referenced from the JSON)."""
    import pandas as pd

    if isinstance(data, dict):
        payload = {k: to_jsonable(v) for k, v in data.items()}
    else:
        payload = to_jsonable(data)
    written = [path.with_suffix(".json").name]
    if hasattr(data, "__dataclass_fields__"):
        for name in data.__dataclass_fields__:
            value = getattr(data, name)
            if isinstance(value, pd.DataFrame) and len(value) > CSV_ROWS:
                csv = path.with_name(f"{path.stem}.csv" if name in ("table", "coords") else f"{path.stem}_{name}.csv")
                value.to_csv(csv, index=False)
                payload[name] = {"csv": csv.name, "rows": len(value)}
                written.append(csv.name)
    path.with_suffix(".json").write_text(json.dumps(payload, indent=1, allow_nan=False), encoding="utf-8")
    return written


_PENDING: list[tuple[Figure, Path]] = []  # read by forked workers (inherited memory, nothing pickled)


def _draw_one(i: int) -> str | None:
    """Draw figure i of _PENDING to its PNG; returns the NotApplicable reason when the renderer declines."""
    import matplotlib.pyplot as plt

    figure, png = _PENDING[i]
    try:
        fig = figure.draw(figure.data)
    except NotApplicable as exc:
        return str(exc)
    try:
        fig.savefig(png)
    finally:
        plt.close(fig)
    return None


def _workers(n_figures: int) -> int:
    wanted = os.environ.get("MLVIZ_RENDER_WORKERS")
    if wanted is not None:
        return max(1, int(wanted))
    return 1 if n_figures < 6 else min(os.cpu_count() or 1, 4)


def draw_all(figures: list[Figure], root: Path, on_step: Callable[[str], None] | None = None) -> dict[int, str]:
    """Draw every figure that has a renderer into root/mlviz/<section>/<name>.png, in forked processes
    when there are several cores and enough figures. Returns {index: reason} for renderers that declined."""
    global _PENDING
    jobs = []
    for i, f in enumerate(figures):
        if f.draw is not None:
            png = root / f.path
            png.parent.mkdir(parents=True, exist_ok=True)
            jobs.append(i)
    _PENDING = [(f, root / f.path) for f in figures]
    declined: dict[int, str] = {}
    try:
        workers = _workers(len(jobs))
        if workers > 1 and "fork" in _start_methods():
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for i, reason in zip(jobs, pool.imap(_draw_one, jobs), strict=True):
                    if on_step:
                        on_step(f"{figures[i].section}/{figures[i].name}")
                    if reason is not None:
                        declined[i] = reason
        else:
            for i in jobs:
                reason = _draw_one(i)
                if on_step:
                    on_step(f"{figures[i].section}/{figures[i].name}")
                if reason is not None:
                    declined[i] = reason
    finally:
        _PENDING = []
    return declined


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()


def render(report: Report, root: Path, on_step: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """PNG + numbers + extra files of every figure under root/mlviz/. Returns (made, skipped): made as
    {section, file, caption} in report order, skipped with the renderers that declined added."""
    root = Path(root)
    declined = draw_all(report.figures, root, on_step)
    made, skipped = [], list(report.skipped)
    for i, f in enumerate(report.figures):
        if i in declined:
            skipped.append({"section": f.section, "figure": f.name, "reason": declined[i]})
            continue
        folder = (root / f.path).parent
        folder.mkdir(parents=True, exist_ok=True)
        write_numbers(folder / f"{f.name}.png", f.data)
        for name, content in f.files.items():
            target = folder / name
            (target.write_bytes if isinstance(content, bytes) else
             lambda text, t=target: t.write_text(text, encoding="utf-8"))(content)
        if f.draw is not None:
            made.append({"section": f.section, "file": f.path, "caption": f.caption,
                         "grid_key": f.grid_key})
    return made, skipped


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"mlviz": mlviz.__version__, "python": platform.python_version()}
    for pkg in ("mlflow", "pandas", "numpy", "scikit-learn", "matplotlib", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def write_top(report: Report, root: Path, made: list[dict], skipped: list[dict], summary_name: str,
              index_name: str) -> dict:
    """summary JSON and index.html of the report under root/mlviz/; returns the summary."""
    from mlviz.render.html import write_index

    summary = dict(report.summary)
    summary["kind"] = report.kind
    summary["figures_made"] = [m["file"] for m in made]
    summary["figures_skipped"] = skipped
    if report.metrics:
        summary.setdefault("headline_metrics", report.metrics)
    if report.related:
        summary["related"] = [to_jsonable(r) for r in report.related]
    summary["versions"] = versions()
    top = root / "mlviz"
    top.mkdir(parents=True, exist_ok=True)
    (top / summary_name).write_text(json.dumps(to_jsonable(summary), indent=1), encoding="utf-8")
    index = write_index(root, [{k: m[k] for k in ("section", "file", "caption")} for m in made], summary)
    if index.name != index_name:
        index.replace(index.with_name(index_name))
    return summary


def owned_sections(report: Report) -> list[str]:
    """The sections this report replaces: those it drew and those it skipped."""
    return list(dict.fromkeys([f.section for f in report.figures] + [s["section"] for s in report.skipped]))


# --------------------------------------------------------------------------- publishing
def publish(report: Report, dest, echo: Callable[[str], None] = print, progress: bool = False,
            headline: str | None = None) -> PublishOutcome:
    """Draw and write the report, then hand it to its destination; prints the closing lines.

    `headline`: the first closing line's start (default "<kind> of <what>"), followed by ': N figures
    written to <where> in S s'."""
    started = time.perf_counter()
    if isinstance(dest, IntoRun):  # a run deleted meanwhile: say so before drawing anything
        from mlviz.store.write import Writer

        Writer(dest.store).refuse_deleted(dest.run_id)
    try:
        tmp = Path(tempfile.mkdtemp(prefix="mlviz-publish-"))
    except OSError as exc:
        raise _disk_fault(exc, "making a temporary folder", dest) from None
    try:
        bar = progress_bar(sum(f.draw is not None for f in report.figures), "drawing figures", progress)
        try:
            made, skipped = render(report, tmp, on_step=lambda _: bar.update(1))
        except OSError as exc:
            raise _disk_fault(exc, f"drawing the figures in the temporary folder {tmp.parent}", dest) from None
        finally:
            bar.close()
        if isinstance(dest, ToFolder):
            folder = Path(dest.path) / "mlviz"
            summary_name, index_name = top_files(report.kind, _index_owner(folder / "index.html"))
            summary = write_top(report, tmp, made, skipped, summary_name, index_name)
            try:
                _into_folder(tmp / "mlviz", folder, owned_sections(report), [summary_name, index_name])
            except OSError as exc:
                from mlviz.errors import disk_error

                raise (disk_error(exc, f"writing the figures to {folder}", "the folder holds part of them "
                                  "(no summary.json) until the next run") or exc) from None
            run_id, where = None, str(folder)
        else:
            from mlviz.store.write import Writer

            writer = Writer(dest.store)
            if isinstance(dest, AnalysisRun):
                summary_name, index_name = top_files(report.kind)
                summary = write_top(report, tmp, made, skipped, summary_name, index_name)
                run_id = writer.log_analysis(
                    tmp, experiment_id=dest.experiment_id, kind=report.kind, run_name=dest.run_name,
                    selection_key=dest.selection_key, fingerprint=dest.fingerprint, target=dest.target,
                    tags=report.tags, metrics=report.metrics, grid=_grid(made, tmp), tables=report.tables)
                where = f"run {run_id}"
            else:
                run_id = dest.run_id
                existing = writer.artifact_paths(run_id, "mlviz")
                taken = MODEL if "mlviz/best_model_summary.json" in existing else None
                summary_name, index_name = top_files(report.kind, taken if "mlviz/index.html" in existing else None)
                summary = write_top(report, tmp, made, skipped, summary_name, index_name)
                writer.log_into_run(tmp, run_id, sections=owned_sections(report), top=[summary_name, index_name],
                                    tags=report.tags, metrics=report.metrics, grid=_grid(made, tmp),
                                    tables=report.tables)
                where = f"run {run_id}"
            folder = None
            experiment_id = dest.experiment_id if isinstance(dest, AnalysisRun) else \
                dest.store.run(run_id)["experiment_id"]
            where += "\n  " + ui_address(dest.store.uri, run_id, experiment_id, f"mlviz/{index_name}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    echo(closing_lines(headline or report.kind, len(made), skipped, where, time.perf_counter() - started,
                       report.notes))
    return PublishOutcome(run_id, folder, [m["file"] for m in made], skipped, summary)


def publish_step(figure: Figure, step: int, dest):
    """One figure of a run still in progress (heatmaps at the end of an epoch), drawn as every figure is:
    logged to the MLflow UI's image grid under `figure.grid_key` with `step` on its slider (dest: IntoRun),
    or handed as an (H, W, 3) uint8 array to `dest(step, rgb)` (your own logger). No report files: the
    run's report is written when it is analysed. Returns the array; None when the renderer declined."""
    import numpy as np
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="mlviz-step-"))
    try:
        if draw_all([figure], tmp):
            return None
        with Image.open(tmp / figure.path) as png:
            rgb = np.asarray(png.convert("RGB"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(dest, IntoRun):
        from mlviz.store.write import Writer

        Writer(dest.store).log_image_steps(dest.run_id, figure.grid_key, [(step, rgb)])
    elif dest is not None:
        dest(step, rgb)
    return rgb


def _disk_fault(exc: OSError, doing: str, dest) -> Exception:
    """A full disk / file-size limit / read-only folder while drawing: one line (nothing was logged yet);
    any other OSError stays what it is."""
    from mlviz.errors import disk_error

    return disk_error(exc, doing, "nothing was logged" if not isinstance(dest, ToFolder) else
                      f"{Path(dest.path) / 'mlviz'} was left as it was") or exc


def _grid(made: list[dict], root: Path) -> list[tuple[str, Path]]:
    return [(m["grid_key"], root / m["file"]) for m in made if m.get("grid_key")]


def _into_folder(src: Path, dest: Path, sections: list[str], top: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in top:  # the summary (its fingerprint) goes first and comes back last: a folder copied
        (dest / name).unlink(missing_ok=True)  # only in part is never taken as up to date
    for section in sections:
        shutil.rmtree(dest / section, ignore_errors=True)
        if (src / section).is_dir():
            shutil.copytree(src / section, dest / section)
    for name in top:
        shutil.copy2(src / name, dest / name)


# --------------------------------------------------------------------------- what the user reads
def ui_address(tracking_uri: str, run_id: str, experiment_id: str, page: str) -> str:
    """Where the report opens in the MLflow UI (as model training, not the GenAI overview)."""
    from mlviz.store.ui import run_url, ui_base

    base = ui_base(tracking_uri)
    if base:
        return f"open: {run_url(base, run_id, experiment_id, page)}"
    return (f"open: {run_url('http://127.0.0.1:5000', run_id, experiment_id, page)} "
            f"(after `mlflow ui --backend-store-uri {tracking_uri}`)")


def closing_lines(what: str, made: int, skipped: list[dict], where: str, seconds: float,
                  notes: list[str] = ()) -> str:
    """'<what>: N figures written to <where> in S s', then notes and the skipped figures grouped by reason."""
    where, _, address = where.partition("\n")
    lines = [f"{what}: {made} figures written to {where} in {seconds:.1f} s"] + ([address] if address else [])
    lines += [f"  {note}" for note in notes]
    grouped: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        grouped.setdefault((s["section"], s["reason"]), []).append(s["figure"])
    for (section, reason), names in grouped.items():
        what_ = names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"
        lines.append(f"  skipped {section}/{what_}: {reason}")
    return "\n".join(lines)


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "fig"):
    """A tqdm bar on a terminal; nothing in CI logs or under --quiet."""
    if not enabled or total <= 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)
