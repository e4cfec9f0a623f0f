"""Reading a 1,000-run sweep's metric histories through a local `mlflow server`.

Baseline: the naive loop `MlflowClient(http_uri).get_metric_history(run_id, key)` for every run and key.
mlviz:    `Store(http_uri).run_records(...)` + `Store.histories(all_run_ids, keys)` (bulk endpoint, parallel).

The sweep (1,000 runs x 100 steps x 3 metrics = 300,000 points) is logged straight into an SQLite file
(bench/_work/read/mlflow.db, reused on later runs; --fresh relogs it), then `mlflow server` is started on
it. The baseline loop is timed on a random sample of runs (--sample, default 100) and extrapolated to all
runs, unless --full. Both readers must return identical histories on the sampled runs.

    python bench/bench_read.py [--runs 1000] [--steps 100] [--sample 100 | --full] [--repeat 3] [--fresh]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WORK, Timer, fmt_s, header_lines, mlflow_server, synthetic_store, table, update_results  # noqa: E402

KEYS = ["val_accuracy", "val_loss", "train_loss"]
EXPERIMENT = "bench-read"
TARGET = 20.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--sample", type=int, default=100, help="runs timed in the baseline loop (then extrapolated)")
    ap.add_argument("--full", action="store_true", help="time the baseline loop over every run")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions of the mlviz read (median reported)")
    ap.add_argument("--workers", type=int, default=None, help="server worker processes (default: mlflow's, 4)")
    ap.add_argument("--fresh", action="store_true", help="relog the sweep even if the store exists")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args()
    load_start = os.getloadavg()

    from mlflow import MlflowClient

    from mlviz.store.read import Store

    work = WORK / "read"
    db = work / "mlflow.db"
    print(f"store: {db} ({args.runs} runs x {args.steps} steps x {len(KEYS)} metrics)", flush=True)
    exp_id, log_s = synthetic_store(db, EXPERIMENT, args.runs, args.steps, fresh=args.fresh)
    print(f"  logged in {fmt_s(log_s)}" if log_s else "  reused the existing store", flush=True)

    with mlflow_server(f"sqlite:///{db}", work / "artifacts", work / "server.log", workers=args.workers) as uri:
        print(f"server: {uri}", flush=True)
        client = MlflowClient(uri)
        # warm every worker (lazy store initialisation) before timing anything
        for _ in range(8):
            client.search_experiments(max_results=1)
        with Store(uri) as store:
            store.run_records([exp_id])  # warm-up

        with Store(uri) as store:
            all_ids = [r["run_id"] for r in store.run_records([exp_id])[0] if r["metrics"]]
        rng = random.Random(0)
        sample = list(all_ids) if args.full else rng.sample(all_ids, min(args.sample, len(all_ids)))
        repeat = max(args.repeat, 1)
        parts = [sample[i::repeat] for i in range(repeat)]

        # mlviz's read and a slice of the baseline loop alternate, so both see the same machine load
        times, rr_times, h_times = [], [], []
        naive: dict[tuple[str, str], list] = {}
        naive_s = 0.0
        frame = records = None
        for i in range(repeat):
            with Timer() as total:
                with Store(uri) as store:
                    with Timer() as t_rr:
                        records, _ = store.run_records([exp_id])
                    run_ids = [r["run_id"] for r in records]
                    with Timer() as t_h:
                        frame = store.histories(run_ids, KEYS)
            times.append(total.seconds)
            rr_times.append(t_rr.seconds)
            h_times.append(t_h.seconds)
            with Timer() as t_naive:
                for run_id in parts[i]:
                    for key in KEYS:
                        naive[(run_id, key)] = client.get_metric_history(run_id, key)
            naive_s += t_naive.seconds
            print(f"  round {i + 1}: mlviz {fmt_s(total.seconds)}; baseline {len(parts[i])} runs "
                  f"in {fmt_s(t_naive.seconds)}", flush=True)
        mlviz_s = statistics.median(times)
        sweep_ids = [r["run_id"] for r in records if r["metrics"]]  # the parent run logs no metric
        points = len(frame)
        per_run = naive_s / len(sample)
        baseline_s = per_run * len(sweep_ids)
        print(f"mlviz: {len(records)} runs, {points} points, median {fmt_s(mlviz_s)}", flush=True)
        print(f"baseline: {len(sample)} runs x {len(KEYS)} keys in {fmt_s(naive_s)} "
              f"-> {fmt_s(baseline_s)} for {len(sweep_ids)} runs", flush=True)

        # ---------------------------------------------------------------- where a bulk call's time goes
        # one 100-run chunk: over HTTP, and the same query on MLflow's SQL store object in this process
        import requests
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        chunk = sweep_ids[:100]
        with Timer() as t_http:
            body = requests.get(uri + "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
                                params={"run_id": chunk, "metric_key": KEYS[0], "max_results": 25000}, timeout=60)
            body.json()
        sql_store = SqlAlchemyStore(f"sqlite:///{db}", str(work / "artifacts"))
        sql_store.get_metric_history_bulk(chunk, KEYS[0], max_results=25000)  # warm
        with Timer() as t_sql:
            found = sql_store.get_metric_history_bulk(chunk, KEYS[0], max_results=25000)
        chunk_points = len(found)

    # ---------------------------------------------------------------- agreement
    grouped = {k: g for k, g in frame.groupby(["run_id", "key"])}
    mismatches = 0
    for (run_id, key), hist in naive.items():
        expected = sorted((m.step, m.value, m.timestamp) for m in hist)
        g = grouped.get((run_id, key))
        got = [] if g is None else sorted(zip(g["step"].astype(int), g["value"].astype(float),
                                              g["timestamp"].astype(int), strict=True))
        mismatches += got != expected
    identical = mismatches == 0
    expected_points = len(sweep_ids) * len(KEYS) * args.steps
    ratio = baseline_s / mlviz_s

    extrapolated = not args.full and len(sample) < len(sweep_ids)
    how = (f"timed on a random sample of {len(sample)} runs ({len(sample) * len(KEYS)} calls, "
           f"{fmt_s(naive_s)}), **extrapolated** x{len(sweep_ids) / len(sample):.0f}") if extrapolated \
        else f"timed over all {len(sweep_ids)} runs"
    rows = [
        ["baseline: `get_metric_history` loop", len(sweep_ids), f"{len(sweep_ids) * len(KEYS) * args.steps:,}",
         f"{baseline_s:.1f}" + (" (extrapolated)" if extrapolated else ""), "1.0x"],
        ["mlviz: `run_records` + `histories`", len(records), f"{points:,}", f"{mlviz_s:.2f}", f"**{ratio:.0f}x**"],
        ["  of which `run_records`", len(records), "", f"{statistics.median(rr_times):.2f}", ""],
        ["  of which `histories` (bulk endpoint)", len(run_ids), f"{points:,}", f"{statistics.median(h_times):.2f}",
         f"{baseline_s / statistics.median(h_times):.0f}x (histories only)"],
    ]
    md = table(["reader", "runs", "points", "seconds", "speed-up"], rows)
    verdict = "met" if ratio >= TARGET else "**missed**"
    notes = [
        f"- Baseline {how}; mlviz timed over all runs, median of {len(times)} "
        f"({', '.join(f'{x:.2f}' for x in times)} s), interleaved with slices of the baseline loop, including `run_records` which the baseline loop does not do.",
        f"- Histories identical on the {len(naive)} sampled (run, key) pairs: **{'yes' if identical else 'NO'}**"
        f" ({mismatches} differ); points read by mlviz {points:,} (expected {expected_points:,}).",
        f"- Target >= {TARGET:.0f}x: {verdict} ({ratio:.1f}x).",
        f"- Where the time goes: one bulk call (100 runs, {chunk_points:,} points, {len(body.content) / 1e6:.1f} MB of "
        f"JSON) took {fmt_s(t_http.seconds)} over HTTP; the same query on MLflow's `SqlAlchemyStore."
        f"get_metric_history_bulk` in-process (SQLAlchemy ORM rows) took {fmt_s(t_sql.seconds)} "
        f"({100 * t_sql.seconds / t_http.seconds:.0f}%, ~{1e6 * t_sql.seconds / max(chunk_points, 1):.0f} µs/point). "
        f"mlviz makes {len(KEYS) * -(-len(run_ids) // 100)} such calls (8 threads); the server and this client share "
        f"{os.cpu_count()} cores.",
        f"- Server: `mlflow server` (default workers) on SQLite, proxied artifacts; sweep "
        f"{'logged in ' + fmt_s(log_s) if log_s else 'reused from an earlier run'} directly into the SQLite file.",
    ]
    print()
    print(md)
    print("\n".join(notes))
    if not args.no_write:
        update_results("bench_read", "Reading metric histories over HTTP (`bench/bench_read.py`)",
                       header_lines(load_start=load_start) + "\n\n" + md + "\n\n" + "\n".join(notes))
    return 0 if identical and points == expected_points else 1


if __name__ == "__main__":
    sys.exit(main())
