"""The whole stage-1 section for a 1,000-run sweep: `mlviz visualize --out`, wall time.

Three CLI runs (each a fresh `mlviz` process, so interpreter start and imports are included):
  1. full:       the output folder is empty: read, analyse, render, write;
  2. unchanged:  nothing changed, so it should stop at "up to date" after reading the store;
  3. --force:    the full analysis again over an existing folder.
The ratio is run 1 against run 2 (what re-running an unchanged sweep saves). Then the pipeline functions
are called in-process (`Store`, `read_sweep`, `fingerprint`, `analyse`, `render_report`), each timed, with
every figure's analysis and rendering timed on its own, to show where the time goes.

The store (bench/_work/stage1/mlflow.db, a synthetic sweep with 10-step histories, as `mlviz
synthetic-sweep` logs it) is reused on later runs; --fresh relogs it.

    python bench/bench_stage1.py [--runs 1000] [--steps 10] [--n-boot 500] [--fresh]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WORK, Timer, fmt_s, header_lines, synthetic_store, table, update_results  # noqa: E402

EXPERIMENT = "bench-stage1"
OBJECTIVE = "val_accuracy"


def cli(args: list[str]) -> tuple[float, str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "mlviz.cli", "visualize", "--quiet", *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=WORK)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load_start = os.getloadavg()

    work = WORK / "stage1"
    db = work / "mlflow.db"
    print(f"store: {db} ({args.runs} runs x {args.steps} steps)", flush=True)
    exp_id, log_s = synthetic_store(db, EXPERIMENT, args.runs, args.steps, fresh=args.fresh)
    print(f"  logged in {fmt_s(log_s)}" if log_s else "  reused the existing store", flush=True)
    uri = f"sqlite:///{db}"
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    common = ["--tracking-uri", uri, "-e", EXPERIMENT, "--metric", OBJECTIVE, "--n-boot", str(args.n_boot),
              "--out", str(out)]

    # ---------------------------------------------------------------- CLI, wall time
    with Timer() as t_import:
        subprocess.run([sys.executable, "-c", "import mlviz.pipeline, mlviz.store.read, mlflow, matplotlib.pyplot"],
                       check=True, env={**os.environ, "MPLBACKEND": "Agg"})
    full_s, full_out = cli(common)
    print(f"full: {fmt_s(full_s)}\n  {full_out.splitlines()[0]}", flush=True)
    same_s, same_out = cli(common)
    print(f"unchanged: {fmt_s(same_s)}\n  {same_out.splitlines()[0]}", flush=True)
    force_s, force_out = cli([*common, "--force"])
    print(f"--force: {fmt_s(force_s)}", flush=True)
    short_circuited = same_out.startswith("up to date")
    n_made = full_out.split(";")[1].split("figures")[0].strip() if ";" in full_out else "?"
    ratio = full_s / same_s

    # ---------------------------------------------------------------- in-process, per step
    import matplotlib

    matplotlib.use("Agg")
    from mlviz.figures.sweep import REGISTRY
    from mlviz.publish import render, write_top
    from mlviz.sections.sweep import RunSelection, analyse, fingerprint, read_sweep
    from mlviz.store.read import Store

    options = {"n_boot": args.n_boot, "seed": 0, "top_k": 10}
    selection = RunSelection(tracking_uri=uri, experiment=EXPERIMENT, metric=OBJECTIVE)
    steps: list[tuple[str, float]] = []
    with Timer() as t:
        store = Store(uri)
    steps.append(("`Store(uri)` (open, schema check)", t.seconds))
    with Timer() as t:
        sweep, exp = read_sweep(store, selection)
    steps.append(("`read_sweep` (search runs, type the sweep)", t.seconds))
    with Timer() as t:
        fingerprint(sweep, options, selection.key(exp.experiment_id))
    steps.append(("`fingerprint`", t.seconds))
    store.close()

    per_figure: dict[str, list[float]] = {}
    marks: dict[str, float] = {}

    def stamp(kind):
        def on_step(name):
            now = time.perf_counter()
            if marks.get(kind) is not None and marks.get(kind + ":name"):
                per_figure.setdefault(marks[kind + ":name"], [0.0, 0.0])[0 if kind == "a" else 1] += now - marks[kind]
            marks[kind], marks[kind + ":name"] = now, name
        return on_step

    def close(kind):
        if marks.get(kind + ":name"):
            per_figure.setdefault(marks[kind + ":name"], [0.0, 0.0])[0 if kind == "a" else 1] += \
                time.perf_counter() - marks[kind]
            marks[kind + ":name"] = None

    on_a = stamp("a")
    with Timer() as t:
        report = analyse(sweep, options, on_step=on_a)
        close("a")
    steps.append((f"`analyse` ({len(REGISTRY)} registry entries)", t.seconds))
    tmp = work / "inproc"
    shutil.rmtree(tmp, ignore_errors=True)
    on_r = stamp("r")
    with Timer() as t:
        os.environ["MLVIZ_RENDER_WORKERS"] = "1"  # one figure at a time, so each can be timed
        made, skipped = render(report, tmp, on_step=on_r)
        write_top(report, tmp, made, skipped, "summary.json", "index.html")
        close("r")
    steps.append((f"`publish.render` + `write_top` ({len(report.figures)} figures + JSON/CSV + index.html, "
                  "one process)", t.seconds))
    inproc_total = sum(s for _, s in steps)

    # analysis names are `section/key`, render names `section/stem`: fold the render of a many-file
    # figure (heatmaps_val_accuracy, optimizer_comparison_...) into its registry key
    spec_of = {f"stage1/{f.name}": f"stage1/{f.name.split('_comparison_')[0] + '_comparison'}"
               for f in report.figures if "_comparison_" in f.name}
    fig_rows: dict[str, list[float]] = {}
    for name, (a, r) in per_figure.items():
        key = spec_of.get(name, name)
        row = fig_rows.setdefault(key, [0.0, 0.0])
        row[0] += a
        row[1] += r
    fig_rows = {k: v for k, v in fig_rows.items() if k.startswith("stage1/")}

    md_cli = table(["run", "wall s", "what happened"], [
        ["1. full (empty `--out`)", f"{full_s:.2f}", f"{n_made} figures written"],
        ["2. unchanged", f"{same_s:.2f}", "up to date (short-circuit)" if short_circuited else
         "**re-rendered** (no short-circuit)"],
        ["3. `--force`", f"{force_s:.2f}", "full re-render"],
        ["ratio full / unchanged", f"**{ratio:.1f}x**", ""],
        ["(reference: `python -c 'import mlviz.pipeline, mlflow, matplotlib.pyplot'`)", f"{t_import.seconds:.2f}",
         "interpreter start + imports, included in every run above"],
    ])
    md_steps = table(["in-process step", "s", "share"],
                     [[name, f"{s:.3f}", f"{100 * s / inproc_total:.0f}%"] for name, s in steps]
                     + [["total", f"{inproc_total:.2f}", "100%"]])
    md_figs = table(["stage-1 figure", "analyse s", "render s", "total s"],
                    [[k, f"{a:.3f}", f"{r:.3f}", f"{a + r:.3f}"]
                     for k, (a, r) in sorted(fig_rows.items(), key=lambda kv: -sum(kv[1]))])
    notes = [
        f"- {len(sweep.runs)} runs analysed (objective {OBJECTIVE}, {args.n_boot} bootstrap resamples); "
        f"store {'logged in ' + fmt_s(log_s) if log_s else 'reused from an earlier run'}.",
        f"- Unchanged re-run short-circuits to 'up to date': **{'yes' if short_circuited else 'NO'}**.",
        "- Each CLI run is a new process; the in-process table below runs the same steps without the process "
        "start and import cost, but its first use of scikit-learn (the importance forest) and of matplotlib "
        "(the first figure) still pays those imports, in a fresh interpreter as the CLI does.",
    ]
    print()
    print(md_cli)
    print()
    print(md_steps)
    print()
    print(md_figs)
    print("\n".join(notes))
    if not args.no_write:
        update_results("bench_stage1", "Stage-1 section end to end (`bench/bench_stage1.py`)",
                       header_lines(load_start=load_start) + "\n\n" + md_cli + "\n\n" + "\n".join(notes) + "\n\nIn-process, per step:\n\n"
                       + md_steps + "\n\nPer stage-1 figure (analysis + rendering):\n\n" + md_figs)
    return 0 if short_circuited else 1


if __name__ == "__main__":
    sys.exit(main())
