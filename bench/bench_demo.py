"""Wall time of `mlviz demo` (default and --quick presets) and of `mlviz visualize` on the sweep it logged.

Each command runs as a user runs it: a fresh process on a fresh SQLite store under bench/_work/demo/
(its own working folder, so artifacts land there). Targets on a 2-core machine: the default demo
under 10 minutes, the quick one under 2 minutes. `visualize` runs with its defaults (500 bootstrap
resamples, best-model diagnostics included); the demo multiclass task is used throughout.

    python bench/bench_demo.py [--presets quick default] [--repeat 1] [--no-write]

Replaces its section of bench/RESULTS.md unless --no-write.
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

LIMITS = {"quick": 120.0, "default": 600.0}  # seconds, for `mlviz demo`


def run(args: list[str], cwd: Path, timeout: float) -> tuple[float, int, str]:
    """Seconds, exit code and combined output of one `mlviz` command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "mlviz.cli", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, output = -9, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}{exc.stderr or ''}"
    return time.perf_counter() - t0, rc, output


def load() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def bench_preset(preset: str, repeat: int, n_boot: int | None) -> list[dict]:
    rows = []
    for i in range(repeat):
        folder = WORK / "demo" / f"{preset}-{i}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        before = load()
        args = ["demo", "--tracking-uri", uri] + (["--quick"] if preset == "quick" else [])
        seconds, rc, output = run(args, folder, timeout=3 * LIMITS[preset])
        inner = re.search(r"demo took (\d+) s", output)
        stages = re.search(r"selected (\d+) candidates", output)
        rows.append({"command": f"mlviz demo{' --quick' if preset == 'quick' else ''}", "preset": preset,
                     "seconds": seconds, "rc": rc, "limit": LIMITS[preset], "load": before,
                     "note": (f"{stages.group(1)} candidates; training loop {inner.group(1)} s" if inner and stages
                              else output.strip().splitlines()[-1][:120] if output.strip() else "")})
        print(f"  demo {preset} #{i + 1}: {fmt_s(seconds)} (rc {rc})", flush=True)
        if rc != 0:
            print(output[-2000:], file=sys.stderr)
            continue
        before = load()
        vis = ["visualize", "--tracking-uri", uri, "--experiment", "mlviz-demo-multiclass", "--quiet"]
        if n_boot:
            vis += ["--n-boot", str(n_boot)]
        seconds, rc, output = run(vis, folder, timeout=1800)
        figures = re.search(r"(\d+) figures written", output)
        last = output.strip().splitlines()[-1][:160] if output.strip() else ""
        rows.append({"command": "mlviz visualize" + (f" --n-boot {n_boot}" if n_boot else ""), "preset": preset,
                     "seconds": seconds, "rc": rc, "limit": None, "load": before,
                     "note": (f"{figures.group(1)} sweep figures" if figures else "")
                     + ("" if rc == 0 else f"; FAILED: {last}")})
        print(f"  visualize {preset} #{i + 1}: {fmt_s(seconds)} (rc {rc})", flush=True)
        if rc != 0:
            print(output[-2000:], file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", choices=sorted(LIMITS), default=["quick", "default"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=None, help="pass --n-boot to visualize (default: its own)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    rows = []
    for preset in args.presets:
        print(f"preset {preset}", flush=True)
        rows += bench_preset(preset, args.repeat, args.n_boot)

    body_rows, verdicts = [], []
    for r in rows:
        if r["limit"] is None:
            met = "—"
        elif r["rc"] != 0:
            met = f"no (exit {r['rc']})"
        else:
            met = "yes" if r["seconds"] < r["limit"] else "**no**"
            verdicts.append(f"`{r['command']}` {fmt_s(r['seconds'])} vs {fmt_s(r['limit'])}: "
                            + ("met" if r["seconds"] < r["limit"] else "NOT met"))
        body_rows.append([f"`{r['command']}`", r["preset"], fmt_s(r["seconds"]),
                          fmt_s(r["limit"]) if r["limit"] else "—", met, r["rc"], r["load"], r["note"]])
    md = "\n\n".join([
        header_lines("Each command a fresh process on a fresh SQLite store; the multiclass task. "
                     "Load = 1/5/15-min load average when the command started (other work on the machine "
                     "slows these single-threaded runs)."),
        table(["command", "preset", "wall", "limit", "met", "exit", "load", "note"], body_rows),
        "\n".join(f"- {v}" for v in verdicts),
    ])
    print()
    print(md)
    if not args.no_write:
        update_results("bench_demo", "`mlviz demo` and `mlviz visualize` wall time (`bench/bench_demo.py`)", md)
        print("\nwritten to bench/RESULTS.md")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
