"""`mlviz visualize` on the quick demo, before and after the one figure path, in one run.

Baseline: the code of commit 2eaaf0c (before `mlviz.publish`), checked out with `git worktree` under
bench/_work/ and put first on PYTHONPATH; candidate: this checkout. Both run as a user runs them (a fresh
process, `--out` into an empty folder, `--force`) on the same quick-demo SQLite store, alternately, so
load on the machine hits both alike. The artifact trees must be identical (same files); the time ratio is
the result. Target: under 25 s for the candidate. The candidate runs with --no-embedding: the embedding
map of the best model (issue 11) came after the baseline and is not part of this comparison.

    python bench/bench_visualize.py [--repeat 2] [--baseline 2eaaf0c] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WORK, fmt_s, header_lines, table, update_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "mlviz-demo-multiclass"


def command(args: list[str], cwd: Path, pythonpath: str | None) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false", MPLBACKEND="Agg")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mlviz.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--baseline", default="2eaaf0c")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    root = WORK / "visualize"
    root.mkdir(parents=True, exist_ok=True)
    store = root / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    if not (store / "mlflow.db").exists():
        store.mkdir(exist_ok=True)
        command(["demo", "--quick", "--tracking-uri", uri], store, None)
    base = root / f"baseline-{args.baseline}"
    if not base.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline], check=True,
                       capture_output=True)
    load_start = os.getloadavg()
    rows, timings = [], {"baseline": [], "candidate": []}
    trees = {}
    for i in range(args.repeat):
        for name, path in (("baseline", str(base)), ("candidate", None)):
            out = root / f"out-{name}-{i}"
            shutil.rmtree(out, ignore_errors=True)
            later = ["--no-embedding"] if name == "candidate" else []  # a section added after the baseline
            seconds, stdout = command(["visualize", "--tracking-uri", uri, "-e", EXPERIMENT, "--out", str(out),
                                       "--force", "--quiet", *later], store, path)
            timings[name].append(seconds)
            trees[name] = files(out)
            parts = [m for line in stdout.splitlines() if "figures written to" in line
                     for m in re.findall(r" in ([0-9.]+ s)$", line)]
            rows.append([name, i + 1, fmt_s(seconds), " + ".join(parts)])
    same = trees["baseline"] == trees["candidate"]
    best_b, best_c = min(timings["baseline"]), min(timings["candidate"])
    body = "\n".join([
        header_lines(f"quick demo store (60 runs), `mlviz visualize --out DIR --force` (500 bootstrap resamples, "
                     "best-model diagnostics and Grad-CAM heatmaps of the best run included), baseline = commit "
                     f"{args.baseline}, run alternately {args.repeat}×", load_start),
        "",
        table(["code", "try", "wall s", "sweep + best model sections, as printed (the rest: start-up, imports, reading)"], rows),
        "",
        table(["", "best wall s", "ratio baseline / candidate", "same files"],
              [["baseline (before mlviz.publish)", fmt_s(best_b), "1.0x", ""],
               ["candidate (one figure path)", fmt_s(best_c), f"**{best_b / best_c:.2f}x**",
                f"{'yes' if same else 'NO'} ({len(trees['candidate'])} files)"]]),
    ])
    print(body)
    if not same:
        print("only baseline:", sorted(set(trees["baseline"]) - set(trees["candidate"]))[:20])
        print("only candidate:", sorted(set(trees["candidate"]) - set(trees["baseline"]))[:20])
    if not args.no_write:
        update_results("visualize", "`mlviz visualize` before and after the one figure path (`bench/bench_visualize.py`)",
                       body)


if __name__ == "__main__":
    main()
