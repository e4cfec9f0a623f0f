"""Scale: a 1,000 / 10,000 / 100,000-run sweep analysed end to end, on SQLite and through a PostgreSQL server.

Each sweep has 10 parameters (log-uniform floats, uniform floats, ints, categoricals, a boolean) and
3 metrics (val_accuracy, val_loss, train_loss) x 100 steps: 30 M metric rows at 100,000 runs.

Generation (timed, not counted): the empty store is created through MLflow (SQLite: `MlflowClient("sqlite:///…")`;
PostgreSQL: the `mlflow server` started on it), the experiment through MLflow, then runs, params, tags
(as MLflow writes them), metrics and latest_metrics are inserted by bulk SQL (executemany on SQLite, COPY
on PostgreSQL) in one transaction, the metric table's secondary indexes dropped during the load and rebuilt.

Measured, each in a fresh subprocess (wall seconds; peak RSS of that child from `os.wait4`):
- `mlviz visualize -e EXP --out DIR -q --no-heatmaps --no-embedding` (the default `--final last`: each
  metric's last value, from MLflow's latest_metrics; no history is read), and
- the same with `--final best` (every run's full history of every metric is read: 30 M points at 100k),
  (a) on the SQLite file directly, (b) through `mlflow server --backend-store-uri postgresql+psycopg://…
  --serve-artifacts` on 127.0.0.1 (server RSS sampled from /proc, its whole process group).
Baseline: `MlflowClient.get_metric_history(run, key)` for every run and key, timed on a random sample of
runs (--sample) and extrapolated to all runs, on both back ends.

    python bench/bench_scale.py [--sizes 1000,10000,100000 | --quick] [--backends sqlite,postgres]
                                [--final last,best] [--sample 100] [--fresh] [--no-write] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    WORK,
    Timer,
    fmt_s,
    free_port,
    header_lines,
    mlflow_server,
    quiet_mlflow,
    table,
    update_results,
)

EXPERIMENT = "bench-scale"
KEYS = ["val_accuracy", "val_loss", "train_loss"]
STEPS = 100
TARGET_S, TARGET_MB = 300.0, 4096.0
ROOT = WORK / "scale"
OPTIMIZERS = ["adam", "adamw", "sgd", "rmsprop"]
ACTIVATIONS = ["relu", "gelu", "tanh"]


# --------------------------------------------------------------------------- the sweep, as arrays
def sweep_arrays(n: int, seed: int = 0) -> dict:
    """Parameters, final scores and curve shapes of n runs (vectorised; deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    p = {
        "learning_rate": 10 ** rng.uniform(-5, -1, n),
        "weight_decay": 10 ** rng.uniform(-6, -2, n),
        "dropout": rng.uniform(0, 0.6, n),
        "momentum": rng.uniform(0.8, 0.99, n),
        "batch_size": 2 ** rng.integers(4, 10, n),
        "n_layers": rng.integers(1, 9, n),
        "hidden_units": rng.integers(32, 1025, n),
        "optimizer": rng.integers(0, len(OPTIMIZERS), n),
        "activation": rng.integers(0, len(ACTIVATIONS), n),
        "augment": rng.integers(0, 2, n).astype(bool),
    }
    lr = np.log10(p["learning_rate"])
    score = (0.92 - 0.04 * (lr + 3) ** 2 - 0.15 * (p["dropout"] - 0.2) ** 2 + 0.01 * np.log2(p["hidden_units"] / 32)
             - 0.004 * np.abs(p["n_layers"] - 4) + np.array([0.01, 0.015, -0.02, 0.0])[p["optimizer"]]
             + 0.01 * p["augment"] + rng.normal(0, 0.01, n))
    p["final_acc"] = np.clip(score, 0.05, 0.995)
    p["tau"] = rng.uniform(5, 30, n)
    return p


def param_strings(p: dict, i0: int, i1: int) -> list[tuple[str, list[str]]]:
    """(name, stored strings) for runs i0..i1, as MLflow stores them (str(value))."""
    s = slice(i0, i1)
    return [
        ("learning_rate", [repr(float(x)) for x in p["learning_rate"][s]]),
        ("weight_decay", [repr(float(x)) for x in p["weight_decay"][s]]),
        ("dropout", [repr(float(x)) for x in p["dropout"][s]]),
        ("momentum", [repr(float(x)) for x in p["momentum"][s]]),
        ("batch_size", [str(int(x)) for x in p["batch_size"][s]]),
        ("n_layers", [str(int(x)) for x in p["n_layers"][s]]),
        ("hidden_units", [str(int(x)) for x in p["hidden_units"][s]]),
        ("optimizer", [OPTIMIZERS[x] for x in p["optimizer"][s]]),
        ("activation", [ACTIVATIONS[x] for x in p["activation"][s]]),
        ("augment", [str(bool(x)) for x in p["augment"][s]]),
    ]


def curves(p: dict, i0: int, i1: int, seed: int) -> dict[str, np.ndarray]:
    """(runs, STEPS) metric values per key for runs i0..i1."""
    rng = np.random.default_rng(seed * 7919 + i0)
    t = np.arange(1, STEPS + 1, dtype=float)[None, :]
    k = i1 - i0
    rise = 1 - np.exp(-t / p["tau"][i0:i1, None])
    acc = 0.1 + (p["final_acc"][i0:i1, None] - 0.1) * rise + rng.normal(0, 0.004, (k, STEPS))
    acc[:, -1] = p["final_acc"][i0:i1]
    val_loss = -np.log(np.clip(acc, 1e-3, 0.999)) + rng.normal(0, 0.01, (k, STEPS))
    train_loss = val_loss * 0.8 * np.exp(-t / 200) + rng.normal(0, 0.01, (k, STEPS))
    return {"val_accuracy": acc, "val_loss": val_loss, "train_loss": np.abs(train_loss)}


T0 = 1_750_000_000_000  # ms


def run_rows(n: int, i0: int, i1: int, exp_id: int, artifact_root: str, ids: list[str]):
    """runs / tags rows for runs i0..i1: run i starts at T0 + 60 s * i and logs a step every 0.5 s."""
    runs, tags = [], []
    for i in range(i0, i1):
        rid = ids[i]
        start = T0 + 60_000 * i
        name = f"trial-{i:06d}"
        runs.append((rid, name, "LOCAL", "bench_scale.py", "", "bench", "FINISHED", start, start + 50_500, "",
                     "active", f"{artifact_root}/{rid}/artifacts", exp_id))
        tags += [("mlflow.runName", name, rid), ("mlflow.user", "bench", rid),
                 ("mlflow.source.name", "bench_scale.py", rid), ("mlflow.source.type", "LOCAL", rid)]
    return runs, tags


def metric_chunks(p: dict, n: int, ids: list[str], seed: int, chunk: int = 5000):
    """Yield (key, i0, i1, values (runs, STEPS)) in key-major, time order (the metrics primary key's order)."""
    for key in KEYS:
        for i0 in range(0, n, chunk):
            i1 = min(n, i0 + chunk)
            yield key, i0, i1, curves(p, i0, i1, seed)[key]


STEP_MS = np.arange(STEPS, dtype=np.int64) * 500


def run_ids(n: int, seed: int) -> list[str]:
    r = random.Random(seed)
    return [uuid.UUID(int=r.getrandbits(128), version=4).hex for _ in range(n)]


# --------------------------------------------------------------------------- SQLite
def make_sqlite(db: Path, n: int, seed: int = 0) -> float:
    """A fresh SQLite store holding the n-run sweep; returns the generation seconds."""
    import sqlite3

    from mlflow import MlflowClient

    for f in db.parent.glob(db.name + "*"):
        f.unlink()
    db.parent.mkdir(parents=True, exist_ok=True)
    with Timer() as t:
        cwd = os.getcwd()
        os.chdir(db.parent)
        try:
            client = MlflowClient(f"sqlite:///{db}")  # creates the schema at this MLflow's version
            exp_id = client.create_experiment(EXPERIMENT)
            root = client.get_experiment(exp_id).artifact_location
        finally:
            os.chdir(cwd)
        p = sweep_arrays(n, seed)
        ids = run_ids(n, seed)
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1000000")
        idx = [r[0] for r in con.execute(
            "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='metrics' AND sql IS NOT NULL")]
        for name, in con.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='metrics' "
                                 "AND sql IS NOT NULL").fetchall():
            con.execute(f"DROP INDEX {name}")
        con.execute("BEGIN")
        for i0 in range(0, n, 5000):
            i1 = min(n, i0 + 5000)
            runs, tags = run_rows(n, i0, i1, int(exp_id), root, ids)
            con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
                            "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
                            "experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
            con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
            for name, values in param_strings(p, i0, i1):
                con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)",
                                zip([name] * (i1 - i0), values, ids[i0:i1], strict=True))
        for key, i0, i1, vals in metric_chunks(p, n, ids, seed):
            ts = (T0 + 60_000 * np.arange(i0, i1, dtype=np.int64))[:, None] + STEP_MS[None, :]
            steps = np.broadcast_to(np.arange(STEPS), vals.shape)
            rid = np.repeat(np.asarray(ids[i0:i1], dtype=object), STEPS)
            con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,0)",
                            zip([key] * rid.size, vals.ravel().tolist(), ts.ravel().tolist(), rid.tolist(),
                                steps.ravel().tolist(), strict=True))
            con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                            "VALUES (?,?,?,?,0,?)",
                            zip([key] * (i1 - i0), vals[:, -1].tolist(), ts[:, -1].tolist(),
                                [STEPS - 1] * (i1 - i0), ids[i0:i1], strict=True))
        for sql in idx:
            con.execute(sql)
        con.execute("COMMIT")
        con.close()
    (db.parent / "done.json").write_text(json.dumps({"n": n, "seed": seed, "seconds": t.seconds}))
    return t.seconds


def sqlite_ready(db: Path, n: int) -> bool:
    try:
        return json.loads((db.parent / "done.json").read_text())["n"] == n and db.exists()
    except (OSError, ValueError, KeyError):
        return False


# --------------------------------------------------------------------------- PostgreSQL
class Postgres:
    """A PostgreSQL server in a folder (kept between runs), on a free port of 127.0.0.1."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.bindir = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                          check=True).stdout.strip())

    def _as_pg(self, *args):
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *map(str, args)], check=True, capture_output=True, text=True, timeout=600)

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o755)
            self.data.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.data, "postgres", "postgres")
            self._as_pg(self.bindir / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self._as_pg(self.bindir / "pg_ctl", "-D", self.data, "-l", self.data / "server.log", "-w", "-t", "120", "-o",
                    f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=8GB "
                    "-c maintenance_work_mem=1GB -c shared_buffers=1GB", "start")

    def stop(self) -> None:
        try:
            self._as_pg(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        except subprocess.SubprocessError:
            pass

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def uri(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def has_db(self, db: str) -> bool:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as con:
            return con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is not None

    def recreate_db(self, db: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {db}")
            con.execute(f"CREATE DATABASE {db}")


def fill_postgres(pg: Postgres, db: str, server_uri: str, n: int, seed: int = 0) -> float:
    """Insert the n-run sweep into the (schema-created, experiment-less) database behind `server_uri`."""
    import psycopg
    from mlflow import MlflowClient

    with Timer() as t:
        client = MlflowClient(server_uri)
        exp_id = client.create_experiment(EXPERIMENT)
        root = client.get_experiment(exp_id).artifact_location
        p = sweep_arrays(n, seed)
        ids = run_ids(n, seed)
        with psycopg.connect(pg.dsn(db)) as con, con.cursor() as cur:
            idx = cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'metrics' "
                              "AND indexname NOT LIKE '%pk%'").fetchall()
            for name, _ in idx:
                cur.execute(f'DROP INDEX "{name}"')
            pk = cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                             "WHERE conrelid = 'metrics'::regclass AND contype = 'p'").fetchone()
            cur.execute(f'ALTER TABLE metrics DROP CONSTRAINT "{pk[0]}"')
            for i0 in range(0, n, 5000):
                i1 = min(n, i0 + 5000)
                runs, tags = run_rows(n, i0, i1, int(exp_id), root, ids)
                with cur.copy("COPY runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
                              "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
                              "experiment_id) FROM STDIN") as cp:
                    for r in runs:
                        cp.write_row(r)
                with cur.copy("COPY tags (key, value, run_uuid) FROM STDIN") as cp:
                    for r in tags:
                        cp.write_row(r)
                with cur.copy("COPY params (key, value, run_uuid) FROM STDIN") as cp:
                    for name, values in param_strings(p, i0, i1):
                        for v, rid in zip(values, ids[i0:i1], strict=True):
                            cp.write_row((name, v, rid))
            for key, i0, i1, vals in metric_chunks(p, n, ids, seed):
                ts = (T0 + 60_000 * np.arange(i0, i1, dtype=np.int64))[:, None] + STEP_MS[None, :]
                # COPY's text format, built with numpy: key, value, timestamp, run_uuid, step, is_nan
                rid = np.repeat(np.asarray(ids[i0:i1]), STEPS)
                steps = np.broadcast_to(np.arange(STEPS), vals.shape).ravel()
                text = "".join(f"{key}\t{v!r}\t{s}\t{r}\t{st}\tf\n" for v, s, r, st in zip(
                    vals.ravel().tolist(), ts.ravel().tolist(), rid.tolist(), steps.tolist(), strict=True))
                with cur.copy('COPY metrics ("key", value, timestamp, run_uuid, step, is_nan) FROM STDIN') as cp:
                    cp.write(text)
                with cur.copy('COPY latest_metrics ("key", value, timestamp, step, is_nan, run_uuid) FROM STDIN') as cp:
                    for v, s, rid1 in zip(vals[:, -1].tolist(), ts[:, -1].tolist(), ids[i0:i1], strict=True):
                        cp.write_row((key, v, s, STEPS - 1, False, rid1))
            cur.execute(f'ALTER TABLE metrics ADD CONSTRAINT "{pk[0]}" {pk[1]}')
            for _, sql in idx:
                cur.execute(sql)
            con.commit()
            con.autocommit = True
            cur.execute("VACUUM ANALYZE")
    return t.seconds


# --------------------------------------------------------------------------- measuring
def rss_mb(pids: list[int]) -> float:
    """Memory of these processes together (MB): proportional set sizes, so pages a forked worker shares
    with its parent count once."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 1024


def group_pids(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


class Sampler:
    """Peak RSS (MB) of a process group (the mlflow server and its workers), sampled every 0.5 s."""

    def __init__(self, pgid: int | None):
        self.pgid, self.peak, self._stop = pgid, 0.0, threading.Event()

    def __enter__(self):
        if self.pgid:
            self._t = threading.Thread(target=self._run, daemon=True)
            self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, rss_mb(group_pids(self.pgid)))

    def __exit__(self, *exc):
        self._stop.set()


def run_child(cmd: list[str], env: dict, log: Path) -> tuple[float, float, float, int]:
    """(wall s, peak RSS MB of its largest process, peak memory MB of its process group, exit code) of one
    subprocess; the group (the child and the forked figure workers) is sampled every 0.5 s."""
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with Sampler(proc.pid) as smp:
            _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, smp.peak, proc.returncode


def visualize(uri: str, out: Path, final: str, log: Path) -> tuple[float, float, float, int]:
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [sys.executable, "-m", "mlviz.cli", "visualize", "--tracking-uri", uri, "-e", EXPERIMENT, "--out",
           str(out), "-q", "--no-heatmaps", "--no-embedding", "--final", final]
    return run_child(cmd, env, log)


def records_readers(uri: str) -> tuple[float, float]:
    """Seconds of `Store.run_records` (MLflow's search_runs) and of the plain-SQL reader, same records."""
    from mlviz.store.read import Store

    with Store(uri) as store:
        exp = store.experiment(EXPERIMENT).experiment_id
        with Timer() as t_orm:
            a, _ = store.run_records([exp])
        with Timer() as t_sql:
            b = store._run_records_sql([exp])
    assert a == b, "the two readers disagree"
    return t_orm.seconds, t_sql.seconds


def naive(uri: str, n_sample: int, seed: int = 0) -> tuple[float, int]:
    """Seconds of the get_metric_history loop on a random sample of runs; the sample size."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    # the sample's ids come from the runs table's first page, then a random choice among them
    ids = [r.info.run_id for r in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL,
                                                      max_results=2000)]
    sample = random.Random(seed).sample(ids, min(n_sample, len(ids)))
    client.get_metric_history(sample[0], KEYS[0])  # warm
    with Timer() as t:
        for rid in sample:
            for key in KEYS:
                hist = client.get_metric_history(rid, key)
                assert len(hist) == STEPS, (rid, key, len(hist))
    return t.seconds, len(sample)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--quick", action="store_true", help="sizes 1000,10000")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--final", default="last,best", help="`--final` modes of visualize to time")
    ap.add_argument("--sample", type=int, default=100, help="runs timed in the naive loop (then extrapolated); 0: no naive loop")
    ap.add_argument("--records-upto", type=int, default=10000,
                    help="time Store.run_records (MLflow search_runs) against the plain-SQL reader up to this size")
    ap.add_argument("--fresh", action="store_true", help="regenerate the stores even if they exist")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--report-only", action="store_true", help="measure nothing: write the table of earlier runs")
    ap.add_argument("--json", default=str(ROOT / "results.json"),
                    help="merge the measurements into this file (the table shows every results*.json beside it)")
    args = ap.parse_args()
    sizes = [] if args.report_only else [1000, 10000] if args.quick else [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    finals = args.final.split(",")
    load_start = os.getloadavg()
    quiet_mlflow()
    results_path = Path(args.json)
    results = json.loads(results_path.read_text()) if results_path.exists() else {}

    def record(key: str, value: dict) -> None:
        mine = json.loads(results_path.read_text()) if results_path.exists() else {}
        mine[key] = results[key] = {**value, "when": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg()[0]}
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(mine, indent=1))

    pg = None
    try:
        for n in sizes:
            if "sqlite" in backends:
                db = ROOT / f"sqlite-{n}" / "mlflow.db"
                if args.fresh or not sqlite_ready(db, n):
                    print(f"sqlite {n}: generating", flush=True)
                    gen = make_sqlite(db, n)
                    record(f"gen/sqlite/{n}", {"seconds": gen, "bytes": db.stat().st_size})
                    print(f"  generated in {fmt_s(gen)} ({db.stat().st_size / 2**20:.0f} MB)", flush=True)
                uri = f"sqlite:///{db}"
                for final in finals:
                    wall, peak, tree, rc = visualize(uri, db.parent / f"out-{final}", final,
                                                     db.parent / f"vis-{final}.log")
                    print(f"  visualize --final {final}: {wall:.1f} s, {peak:.0f} MB (all processes {tree:.0f} MB), "
                          f"rc {rc}", flush=True)
                    record(f"vis/sqlite/{n}/{final}", {"seconds": wall, "peak_mb": peak, "tree_mb": tree, "rc": rc})
                if n <= args.records_upto:
                    orm, sql = records_readers(uri)
                    record(f"records/sqlite/{n}", {"search_runs": orm, "sql": sql})
                    print(f"  run_records: MLflow search_runs {orm:.1f} s, plain SQL {sql:.2f} s", flush=True)
                if args.sample > 0:
                    s, k = naive(uri, args.sample)
                    record(f"naive/sqlite/{n}", {"seconds": s, "sample": k, "per_run": s / k})
                    print(f"  naive: {k} runs in {s:.2f} s -> {s / k * n:.0f} s for {n}", flush=True)
            if "postgres" in backends:
                if pg is None:
                    pg = Postgres(ROOT / "pg")
                    pg.start()
                dbname = f"mlflow{n}"
                marker = ROOT / f"pg-{n}.done"
                fresh = args.fresh or not marker.exists() or not pg.has_db(dbname)
                if fresh:
                    pg.recreate_db(dbname)
                    marker.unlink(missing_ok=True)
                work = ROOT / f"pg-{n}"
                work.mkdir(parents=True, exist_ok=True)
                with mlflow_server(pg.uri(dbname), work / "artifacts", work / "server.log", timeout=300) as uri:
                    if fresh:
                        print(f"postgres {n}: generating", flush=True)
                        gen = fill_postgres(pg, dbname, uri, n)
                        marker.write_text(str(gen))
                        record(f"gen/postgres/{n}", {"seconds": gen})
                        print(f"  generated in {fmt_s(gen)}", flush=True)
                    import requests

                    for _ in range(8):  # warm every worker
                        requests.get(uri + "/api/2.0/mlflow/experiments/get-by-name",
                                     params={"experiment_name": EXPERIMENT}, timeout=60)
                    server_pgid = _server_pgid(uri)
                    for final in finals:
                        with Sampler(server_pgid) as smp:
                            wall, peak, tree, rc = visualize(uri, work / f"out-{final}", final,
                                                             work / f"vis-{final}.log")
                        print(f"  visualize --final {final}: {wall:.1f} s, {peak:.0f} MB (all processes {tree:.0f} "
                              f"MB; server {smp.peak:.0f} MB), rc {rc}", flush=True)
                        record(f"vis/postgres/{n}/{final}", {"seconds": wall, "peak_mb": peak, "tree_mb": tree,
                                                              "rc": rc, "server_peak_mb": smp.peak})
                    if args.sample > 0:
                        s, k = naive(uri, args.sample)
                        record(f"naive/postgres/{n}", {"seconds": s, "sample": k, "per_run": s / k})
                        print(f"  naive: {k} runs in {s:.2f} s -> {s / k * n:.0f} s for {n}", flush=True)
    finally:
        if pg is not None:
            pg.stop()
    for other in sorted(results_path.parent.glob("results*.json")):  # rows measured by earlier runs
        if other != results_path:
            results = {**json.loads(other.read_text()), **results}
    md, notes = render(results, load_start)
    print()
    print(md)
    print("\n".join(notes))
    if not args.no_write:
        update_results("bench_scale", "Scale: 1,000 → 100,000 runs end to end (`bench/bench_scale.py`)",
                       header_lines(extra=f"Rows measured {span(results)} (load average per row in the notes).",
                                    load_start=load_start) + "\n\n" + md + "\n\n" + "\n".join(notes))
    return 0


def span(results: dict) -> str:
    when = sorted(v["when"] for k, v in results.items() if k.startswith(("vis/", "naive/", "records/")))
    return f"between {when[0]} and {when[-1]}" if when else "never"


def _server_pgid(uri: str) -> int | None:
    """The process group of the `mlflow server` listening on uri's port (started by mlflow_server)."""
    port = uri.rsplit(":", 1)[1]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"server" in cmd and port.encode() in cmd and b"mlflow" in b" ".join(cmd):
                return os.getpgid(int(d.name))
    return None


def render(results: dict, load_start) -> tuple[str, list[str]]:
    sizes = sorted({int(k.split("/")[2]) for k in results if k.startswith("vis/")})
    rows = []
    for backend, label in (("sqlite", "SQLite file"), ("postgres", "PostgreSQL via `mlflow server`")):
        for final in ("last", "best"):
            prev = None
            for n in sizes:
                v = results.get(f"vis/{backend}/{n}/{final}")
                nv = results.get(f"naive/{backend}/{n}")
                if v is None:
                    continue
                v = {"tree_mb": v["peak_mb"], **v}  # rows measured before the group was sampled
                growth = (f"x{v['seconds'] / prev['seconds']:.1f} time, x{v['tree_mb'] / prev['tree_mb']:.1f} memory "
                          f"for x{n / prev['n']:.0f} runs" if prev else "")
                naive_s = nv["per_run"] * n if nv else None
                naive_txt = "" if naive_s is None else (
                    f"{naive_s:.0f}" + (f" (extrapolated from {nv['sample']} runs)" if nv["sample"] < n else ""))
                server = f"; server {v['server_peak_mb']:.0f}" if v.get("server_peak_mb") else ""
                ok = "" if v["rc"] == 0 else f" **(exit {v['rc']})**"
                rows.append([label, f"`--final {final}`", f"{n:,}", f"{v['seconds']:.1f}{ok}",
                             f"{v['tree_mb']:.0f} ({v['peak_mb']:.0f}){server}", growth, naive_txt])
                prev = {**v, "n": n}
    md = table(["back end", "mode", "runs", "mlviz visualize s", "peak MB: all processes (largest one)",
                "growth vs previous size", "naive `get_metric_history` loop s (histories only)"], rows)
    rec = [[f"{int(k.split('/')[2]):,}", f"{v['search_runs']:.1f}", f"{v['sql']:.2f}",
            f"{v['search_runs'] / v['sql']:.0f}x"] for k, v in sorted(results.items(), key=lambda kv: kv[0])
           if k.startswith("records/")]
    if rec:
        md += "\n\nReading the runs (SQLite, in-process, identical records):\n\n" + table(
            ["runs", "`Store.run_records` (MLflow `search_runs`) s", "plain-SQL reader s", "speed-up"], rec)
    gens = ", ".join(f"{k.split('/')[1]} {int(k.split('/')[2]):,}: {fmt_s(v['seconds'])}"
                     for k, v in sorted(results.items()) if k.startswith("gen/"))
    best100 = results.get("vis/sqlite/100000/last")
    verdict = ("not measured" if best100 is None else
               f"{best100['seconds']:.0f} s and {best100['tree_mb']:.0f} MB: "
               f"{'met' if best100['seconds'] < TARGET_S and best100['tree_mb'] < TARGET_MB else '**missed**'}")
    loads = ", ".join(f"{k}: {v['load']:.1f}" for k, v in sorted(results.items())
                      if k.startswith(("vis/", "naive/", "records/")))
    notes = [
        "- Each sweep: 10 parameters (log-uniform learning_rate and weight_decay, uniform dropout and momentum, "
        "int batch_size/n_layers/hidden_units, categorical optimizer/activation, boolean augment), 3 metrics x "
        f"{STEPS} steps (30 M metric rows at 100,000 runs). Generated by bulk SQL into an MLflow-created schema "
        f"(not counted): {gens}.",
        "- `mlviz visualize -e bench-scale --out DIR -q --no-heatmaps --no-embedding` in a fresh process: wall "
        "seconds include interpreter start and imports; memory is the peak of the process group's summed PSS "
        "(the CLI and its forked figure workers, sampled every 0.5 s), with the largest single process's max RSS "
        "(`os.wait4`) in brackets. `--final last` (the default) takes each metric's last value from MLflow's "
        "latest_metrics and reads no history; `--final best` needs every run's history of every metric (300 "
        "points a run: 30 M at 100,000 runs): on SQLite the database reduces each to its min and max, through "
        "the server the full histories are read (bulk endpoint, 100 runs a call, 8 threads).",
        "- PostgreSQL: `mlflow server --backend-store-uri postgresql+psycopg://… --serve-artifacts` (default "
        "workers) on 127.0.0.1; 'server' is its process group's peak memory (PSS, sampled).",
        "- Naive loop: `MlflowClient.get_metric_history(run, key)` for every run and key (histories only, no "
        "analysis), timed on a random sample of runs and extrapolated to all runs.",
        f"- Target (100,000 runs on SQLite, default mode: < {TARGET_S:.0f} s, < {TARGET_MB:.0f} MB): {verdict}.",
        "- What was fixed for scale (profiled at 10,000 runs): (1) the runs: MLflow's `search_runs` builds an "
        "ORM object per run, param, tag and metric (10,000 runs: 1.7 M rows, minutes, and superlinear); on SQL "
        "stores without `--filter` mlviz reads the four tables by plain SQL (`Store._run_records_sql`, identical "
        "records, see the second table). (2) `--final best`: on SQL stores the database reduces each history "
        "to its min and max (`Store._history_extremes_sql`, one GROUP BY per 500 runs through the run_uuid "
        "index) instead of moving 30 M points into Python; elsewhere `Store.histories` now builds columns "
        "(numpy, shared run/key strings) instead of a tuple per point, on SQL stores by plain SQL through the "
        "run_uuid index (`key || ''` keeps SQLite off the primary key, which starts with the key and made each "
        "500-run query scan every run's points), over HTTP as each bulk answer arrives. (3) Figures: above "
        "5,000 runs parallel coordinates draw all runs as a density with the best 1,000 as lines, and the "
        "optimisation history a hexbin density instead of a point per run; the importance forest was already "
        "capped at 2,000 runs; the other analyses are linear numpy/pandas.",
        "- Histories are read only where a figure draws them: the default `--final last` takes MLflow's "
        "latest_metrics (read with the runs), and learning curves are drawn for stage-2 runs only (the few "
        "candidates a two-stage sweep retrains), so a flat 100,000-run sweep reads no history at all; "
        "`--final best` is the only mode that needs every run's history, and needs only its extremes.",
        "- The naive loop's cost per call grows with the store on SQLite: MLflow's `get_metric_history` query "
        "(`WHERE run_uuid = ? AND key = ?`) is planned on the primary key (key, timestamp, …), i.e. it scans "
        "every run's points of that key; hence the superlinear extrapolations.",
        "- PostgreSQL at 100,000 runs was not measured in this session (generating 30 M rows into PostgreSQL "
        "and a 100,000-run `search_runs` through the server did not fit the time left on the shared machine); "
        "the server path is bounded by MLflow's server-side ORM (`search_runs` and `get-history-bulk`), which "
        "mlviz cannot bypass over HTTP.",
        f"- The machine (2 cores) was shared with 3-4 other jobs: 1-min load average when each row was measured: "
        f"{loads}. Times are inflated by that load (a load of 8 on 2 cores is ~4x); memory is not. The 100,000-run "
        "SQLite rows were first measured at a load of 12-20 (the same code): 193 s (`--final last`) and 199 s "
        "(`--final best`), 1.15-1.17 GB; the final rows were rerun when the load fell.",
    ]
    return md, notes


if __name__ == "__main__":
    sys.exit(main())
