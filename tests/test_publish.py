"""The one figure path: a figure added with one registry line reaches --out, a logged run and index.html;
every registry entry's renderer resolves; drawing in parallel processes writes what one process writes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from conftest import SYNTHETIC_EXPERIMENT, run_cli

from mlviz.figures import FigureSpec, register, resolve, unregister
from mlviz.figures.model import BEST_MODEL_FIGURES, PROGRESS_FIGURES
from mlviz.figures.sweep import REGISTRY


# --------------------------------------------------------------------------- a toy figure, as a user adds one
@dataclass
class ObjectiveSpread:
    n_runs: int
    low: float
    high: float


def objective_spread(ctx) -> ObjectiveSpread:
    """The analysis: the objective's range over the stage-1 runs."""
    values = ctx.stage(1).runs[ctx.sweep.objective_column]
    return ObjectiveSpread(len(values), float(values.min()), float(values.max()))


def plot_objective_spread(result: ObjectiveSpread):
    """The renderer: one bar from low to high."""
    from mlviz.render.style import plt

    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.barh(["objective"], [result.high - result.low], left=[result.low])
    ax.set_title(f"objective range over {result.n_runs} runs")
    return fig


TOY = FigureSpec("stage1", "objective_spread", "The objective's range over the stage-1 runs.", "one run",
                 objective_spread, plot_objective_spread)


@pytest.fixture
def toy_registered():
    register(TOY)
    yield TOY
    unregister(TOY)


def test_a_figure_added_with_one_registry_line_reaches_out_run_and_index(toy_registered, synthetic_copy, clean_env,
                                                                         tmp_path):
    from mlflow import MlflowClient

    uri, exp_id = synthetic_copy["uri"], synthetic_copy["experiment_id"]
    out = tmp_path / "out"
    r = run_cli("visualize", "--tracking-uri", uri, "-e", SYNTHETIC_EXPERIMENT, "--n-boot", "20", "--out", out,
                "--quiet")
    assert r.exit_code == 0, r.output
    data = json.loads((out / "mlviz" / "stage1" / "objective_spread.json").read_text())
    assert data["n_runs"] == synthetic_copy["n_runs"] and data["low"] < data["high"]
    assert (out / "mlviz" / "stage1" / "objective_spread.png").stat().st_size > 1000
    assert "mlviz/stage1/objective_spread.png" in (out / "mlviz" / "index.html").read_text()
    assert "mlviz/stage1/objective_spread.png" in json.loads((out / "mlviz" / "summary.json").read_text())["figures_made"]

    r = run_cli("visualize", "--tracking-uri", uri, "-e", SYNTHETIC_EXPERIMENT, "--n-boot", "20", "--quiet")
    assert r.exit_code == 0, r.output
    client = MlflowClient(uri)
    run = client.search_runs([exp_id], filter_string="tags.`mlviz.analysis` = 'visualize'")[0]
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "mlviz/stage1")}
    assert {"mlviz/stage1/objective_spread.png", "mlviz/stage1/objective_spread.json"} <= logged
    index = client.download_artifacts(run.info.run_id, "mlviz/index.html", str(tmp_path))
    assert "objective_spread" in open(index, encoding="utf-8").read()


def test_every_registry_renderer_resolves():
    """Renderers named as 'module:function' are checked here, not first at render time."""
    for spec in REGISTRY + BEST_MODEL_FIGURES + PROGRESS_FIGURES:
        assert callable(resolve(spec.renderer)), spec.key
        assert spec.caption and spec.needs, spec.key


def test_parallel_drawing_writes_what_one_process_writes(synthetic_store, tmp_path, monkeypatch):
    from mlviz.publish import ToFolder, publish
    from mlviz.sections.sweep import analyse, load_sweep

    sweep = load_sweep(synthetic_store["uri"], experiment=SYNTHETIC_EXPERIMENT)
    report = analyse(sweep, {"n_boot": 20})
    trees = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("MLVIZ_RENDER_WORKERS", workers)
        folder = tmp_path / workers
        done = publish(report, ToFolder(folder), echo=lambda _: None)
        trees[workers] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert len(done.made) == len(report.figures) >= 10
    assert trees["1"] == trees["2"]
    for name in ("parameter_importance", "parallel_coordinates"):
        one = (tmp_path / "1" / "mlviz" / "stage1" / f"{name}.json").read_text()
        assert one == (tmp_path / "2" / "mlviz" / "stage1" / f"{name}.json").read_text()
