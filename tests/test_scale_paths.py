"""The paths that keep a 100,000-run sweep fast (bench/bench_scale.py): the plain-SQL run and history
readers must return exactly what MLflow's own calls return, the best-of-history reduction must match a
pandas groupby, and parallel coordinates switch to a density above DENSITY_ABOVE runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import fresh_sqlite_store

pytestmark = pytest.mark.usefixtures("clean_env")
KEYS = ["val_loss", "val_accuracy", "train_loss"]


@pytest.fixture
def small_store(tmp_path):
    """Two experiments; runs with params, tags, histories (a NaN, a repeated step, an infinite value), a
    deleted run, a failed run without metrics, a run whose name is only in its tag."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    store = fresh_sqlite_store(tmp_path)
    client = MlflowClient(store["uri"])
    exp = client.create_experiment("scale", artifact_location=str(tmp_path / "art"))
    other = client.create_experiment("other", artifact_location=str(tmp_path / "art2"))
    rng = np.random.default_rng(3)
    ids = []
    for i in range(12):
        run = client.create_run(exp if i < 10 else other, run_name=f"trial-{i}", start_time=1_000 + i)
        rid = run.info.run_id
        ids.append(rid)
        metrics = [Metric(k, float(rng.normal()), 10_000 + 10 * s, s) for k in KEYS for s in range(5)]
        if i == 3:
            metrics += [Metric("val_loss", math.nan, 20_000, 5), Metric("val_loss", 0.25, 20_001, 2)]
        if i == 4:
            metrics += [Metric("train_loss", math.inf, 20_000, 6)]
        params = [Param("lr", str(10 ** -rng.uniform(1, 4))), Param("opt", ["adam", "sgd"][i % 2])]
        client.log_batch(rid, metrics=[] if i == 7 else metrics, params=params,
                         tags=[RunTag("mlviz.stage", "1")])
        client.set_terminated(rid, "FAILED" if i == 7 else "FINISHED")
    client.delete_run(ids[5])
    con = __import__("sqlite3").connect(store["db"])
    con.execute("UPDATE runs SET name = '' WHERE run_uuid = ?", (ids[6],))  # the name only in mlflow.runName
    con.commit()
    con.close()
    return {**store, "experiment_id": exp, "other": other, "run_ids": ids}


def test_plain_sql_run_records_match_search_runs(small_store):
    from mlviz.store.read import Store

    with Store(small_store["uri"]) as store:
        for exps in ([small_store["experiment_id"]], [small_store["experiment_id"], small_store["other"]]):
            expected, unreadable = store._run_records_search(exps)  # MLflow's search_runs
            assert _nan_safe(store.run_records(exps)[0]) == _nan_safe(store._run_records_sql(exps))  # what it gives
            got = store._run_records_sql(exps)
            assert unreadable == []
            assert len(got) == len(expected) == (10 if len(exps) == 1 else 12)
            assert [r["run_id"] for r in got] == [r["run_id"] for r in expected]  # search_runs' order
            assert _nan_safe(got) == _nan_safe(expected)
        by_id = {r["run_id"]: r for r in got}
        assert by_id[small_store["run_ids"][5]]["lifecycle_stage"] == "deleted"
        assert by_id[small_store["run_ids"][7]]["metrics"] == {}
        assert by_id[small_store["run_ids"][6]]["run_name"] == "trial-6"


def _nan_safe(records):
    """NaN != NaN: compare metric values as their repr."""
    return [{**r, "metrics": {k: repr(v) for k, v in r["metrics"].items()}} for r in records]


def test_plain_sql_run_records_decline_other_stores(tmp_path):
    from mlviz.store.read import Store

    (tmp_path / "mlruns").mkdir()
    with Store(str(tmp_path / "mlruns")) as store:
        assert store._run_records_sql(["0"]) is None
        assert store._history_extremes_sql(["0" * 32], ["x"]) is None


def test_columnar_histories_match_mlflow_bulk_reader(small_store):
    from mlviz.store.read import Store

    with Store(small_store["uri"]) as store:
        ids = small_store["run_ids"]
        ticks = []
        got = store.histories(ids + ids[:2], KEYS + ["missing"], progress=lambda n: _Bar(n, ticks))
        sql_store = store.read_client._tracking_client.store
        rows = [(m.run_id, m.key, m.step, m.value, m.timestamp) for key in KEYS + ["missing"]
                for m in sql_store.get_metric_history_bulk(ids, key, max_results=2**62)]  # MLflow's reader
    expected = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"]).sort_values(
        ["run_id", "key", "step", "timestamp"], kind="mergesort").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    assert len(got) == 11 * 15 + 2 + 1  # run 7 logged nothing; run 3 two extra points, run 4 one
    assert got["value"].isna().sum() == 1  # MLflow's is_nan flag
    assert (got["value"] == np.finfo(float).max).sum() == 1  # MLflow stores inf as the largest float
    assert ticks == [4]  # one progress tick per (key, 500-run chunk)


def test_database_extremes_match_the_histories(small_store):
    from mlviz.sections.sweep import history_extremes
    from mlviz.store.read import Store

    with Store(small_store["uri"]) as store:
        ids = small_store["run_ids"]
        in_sql = store._history_extremes_sql(ids, KEYS)
        reference = history_extremes(store.histories(ids, KEYS))
    assert set(in_sql) == set(reference) and len(in_sql) == 11 * 3
    for k, (lo, hi) in reference.items():
        assert in_sql[k] == pytest.approx((lo, hi))
    assert in_sql[(ids[3], "val_loss")][0] <= 0.25  # the NaN point ignored, the repeated step counted


class _Bar:
    def __init__(self, total, ticks):
        self.ticks = ticks
        ticks.append(0)
        assert total == 4

    def update(self, n):
        self.ticks[-1] += n

    def close(self):
        pass


def test_history_extremes_match_groupby():
    from mlviz.sections.sweep import history_extremes

    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"run_id": rng.choice(["a", "b", "c", "d"], n), "key": rng.choice(["x", "y"], n),
                          "step": rng.integers(0, 50, n), "value": rng.normal(size=n), "timestamp": 0})
    frame.loc[frame.sample(50, random_state=1).index, "value"] = np.nan
    frame.loc[(frame["run_id"] == "d") & (frame["key"] == "y"), "value"] = np.nan  # all NaN
    frame = frame.sort_values(["run_id", "key", "step"], kind="mergesort").reset_index(drop=True)
    got = history_extremes(frame)
    ref = frame.groupby(["run_id", "key"])["value"].agg(["min", "max"])
    assert set(got) == set(ref.index)
    for (r, k), row in ref.iterrows():
        lo, hi = got[(r, k)]
        if r == "d" and k == "y":
            assert math.isnan(lo) and math.isnan(hi)
        else:
            assert (lo, hi) == (row["min"], row["max"])
    assert history_extremes(frame.iloc[:0]) == {}


def test_final_best_reads_the_best_of_each_history(small_store):
    from mlviz.sections.sweep import RunSelection, read_sweep
    from mlviz.store.read import Store

    with Store(small_store["uri"]) as store:
        sweep, _ = read_sweep(store, RunSelection(experiment="scale", final="best", metric="val_accuracy"))
        hist = store.histories(small_store["run_ids"][:10], KEYS)
    runs = sweep.runs.set_index("run_id")
    for rid, g in hist.groupby("run_id"):
        if rid not in runs.index:
            continue
        for key, h in g.groupby("key"):
            want = h["value"].min() if key.endswith("loss") else h["value"].max()
            assert runs.loc[rid, f"metrics.{key}"] == pytest.approx(want, nan_ok=True)


def test_line_density_counts_every_run_once_per_column():
    from mlviz.render.stage1 import _Y_RANGE, line_density

    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (500, 4))
    data[0] = 0.5  # one flat line
    counts = line_density(data, cols_per_gap=10, rows=50)
    assert counts.shape == (50, 30)
    assert (counts.sum(axis=0) == 500).all()
    row = int((0.5 - _Y_RANGE[0]) / (_Y_RANGE[1] - _Y_RANGE[0]) * 50)
    flat = line_density(data[:1], cols_per_gap=10, rows=50)
    assert flat[row].sum() == 30 and flat.sum() == 30


def test_parallel_coordinates_draw_a_density_at_scale(monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.image import AxesImage

    from mlviz.analysis.stage1 import parallel_coordinates
    from mlviz.render import stage1 as r1
    from mlviz.sweep import build_sweep

    rng = np.random.default_rng(1)
    records = [{"run_id": f"{i:032x}", "run_name": f"t{i}", "status": "FINISHED", "start_time": i,
                "params": {"lr": str(10 ** -rng.uniform(1, 4)), "opt": ["adam", "sgd"][i % 2],
                           "depth": str(int(rng.integers(1, 5)))},
                "metrics": {"val_accuracy": float(rng.uniform())}, "tags": {}} for i in range(300)]
    result = parallel_coordinates(build_sweep(records), top_k=5)
    fig = r1.plot_parallel_coordinates(result)  # 300 runs: one line each
    ax = fig.axes[0]
    assert not any(isinstance(im, AxesImage) for im in ax.images)
    assert len(next(c for c in ax.collections if isinstance(c, LineCollection)).get_segments()) == 300
    plt.close(fig)

    monkeypatch.setattr(r1, "DENSITY_ABOVE", 100)
    monkeypatch.setattr(r1, "LINES_AT_SCALE", 40)
    fig = r1.plot_parallel_coordinates(result)
    ax = fig.axes[0]
    assert len(ax.images) == 1
    lines = next(c for c in ax.collections if isinstance(c, LineCollection))
    assert len(lines.get_segments()) == 40
    best = np.sort(result.coords["objective_value"].to_numpy())[-40:]
    assert np.allclose(np.sort(lines.get_array()), best)  # the best 40 runs, coloured by their objective
    assert "300 runs as a density" in ax.get_title()
    plt.close(fig)


@pytest.mark.server
def test_columnar_http_histories_equal_the_sql_ones(small_store, monkeypatch):
    """The bulk endpoint's answers, turned into columns as they arrive, give the very frame (order, dtypes,
    values) the database gives: both paths feed `--final best` and learning curves. The runs, read over
    HTTP page by page (pages of 4 here, 1,000 in use), are the records the database gives."""
    pytest.importorskip("requests")
    import os
    import subprocess
    import sys

    from test_http_server import _free_port, _stop, _wait_healthy

    from mlviz.store.read import Store

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = small_store["root"] / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                 "--backend-store-uri", small_store["uri"], "--workers", "1"],
                                cwd=small_store["root"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_healthy(uri, proc, log, 120)
        ids = small_store["run_ids"]
        exps = [small_store["experiment_id"], small_store["other"]]
        monkeypatch.setattr(Store, "HTTP_PAGE", 4)
        with Store(uri) as store:
            over_http = store.histories(ids, KEYS)
            extremes_http = store.histories(ids, KEYS, extremes=True)  # reduced as each bulk answer arrives
            runs_http, unreadable = store.run_records(exps)
        with Store(small_store["uri"]) as store:
            in_sql = store.histories(ids, KEYS)
            extremes_sql = store.histories(ids, KEYS, extremes=True)  # MIN/MAX by the database
            runs_sql = store._run_records_sql(exps)
    finally:
        _stop(proc)
    pd.testing.assert_frame_equal(over_http, in_sql)
    assert set(extremes_http) == set(extremes_sql) and len(extremes_http) == 11 * 3  # run 7 logged nothing
    for k, (lo, hi) in extremes_sql.items():
        assert extremes_http[k] == pytest.approx((lo, hi), nan_ok=True)
    assert extremes_http[(ids[3], "val_loss")][0] <= 0.25  # the NaN point ignored
    assert len(runs_http) == 12 and unreadable == []  # 3 full pages of 4
    assert _nan_safe(runs_http) == _nan_safe(runs_sql)
