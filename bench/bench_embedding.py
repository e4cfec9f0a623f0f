"""`mlviz embed` on 10,000 × 512 features, from a fresh process to the figure logged into the run, against
plain `umap.UMAP().fit_transform` on the same data (also a fresh process), each with its trustworthiness.

Each case runs in a new Python process, first with an empty numba cache folder (cold: UMAP and
pynndescent compile their numba code) and then again with the same folder (warm: what was compiled with
cache=True, and what mlviz turns caching on for, is loaded from disk). A last row runs mlviz with UMAP's
own 500 epochs to show what the 200-epoch default trades. Wall time and CPU time (user + system of the child) are both reported:
the machine is shared, and CPU time is what a busy machine disturbs least.

    python bench/bench_embedding.py [--n 10000] [--dims 512] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, fmt_s, header_lines, quiet_mlflow, table, update_results  # noqa: E402

HERE = WORK / "embedding"
BASELINE = """
import sys, numpy as np, umap
x = np.load(sys.argv[1])
np.save(sys.argv[2], umap.UMAP().fit_transform(x))
"""


# `mlviz embed --run` before issue 11 (pynndescent graph, UMAP's 500 epochs, its uncached numba code compiled
# in every process, 5-NN accuracy on all 10,000 points), from this section as it stood
BEFORE = ["before issue 11, same data and script (2026-12-02 09:03, load 0.9 at the start, 3.8 at the end): "
          "`mlviz embed --run` cold 106 s wall / 92.28 s CPU, warm 63.99 s / 61.35 s, trustworthiness 0.968; "
          "plain UMAP warm 42.45 s / 45.83 s",
          "mlviz now: an exact 15-NN graph (scikit-learn, brute force on the 50 PCA dims) handed to UMAP instead of "
          "pynndescent's (whose nearest-neighbour descent is compiled anew by numba in every process); 200 epochs "
          "(UMAP's own choice above 10,000 points); numba's disk cache turned on for UMAP's graph and layout "
          "functions; still seeded, so one thread and the same map for the same seed"]


def make_data(n: int, dims: int, seed: int = 0) -> tuple[Path, Path]:
    """Clustered features like a network's: 10 classes on a 16-d latent space, mapped to `dims`
    non-negative (ReLU) values plus noise."""
    import numpy as np
    import pandas as pd

    x_path, m_path = HERE / f"x_{n}x{dims}.npy", HERE / f"meta_{n}.csv"
    if x_path.exists() and m_path.exists():
        return x_path, m_path
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 16)) * 4
    labels = rng.integers(0, 10, n)
    z = centres[labels] + rng.normal(size=(n, 16))
    x = np.maximum(z @ (rng.normal(size=(16, dims)) / 4), 0) + 0.3 * rng.normal(size=(n, dims))
    np.save(x_path, x.astype(np.float32))
    pd.DataFrame({"sample_id": [f"s{i:05d}" for i in range(n)], "label": labels}).to_csv(m_path, index=False)
    return x_path, m_path


def make_store(x_path: Path, m_path: Path) -> tuple[str, str]:
    """A fresh SQLite store with one run that logged embeddings/penultimate.npy + embeddings/metadata.csv."""
    from mlflow import MlflowClient

    quiet_mlflow()
    root = HERE / "store"
    shutil.rmtree(root, ignore_errors=True)
    (root / "staging" / "embeddings").mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("bench-embedding", artifact_location=str(root / "artifacts"))
    run_id = client.create_run(exp, run_name="model").info.run_id
    shutil.copy(x_path, root / "staging" / "embeddings" / "penultimate.npy")
    shutil.copy(m_path, root / "staging" / "embeddings" / "metadata.csv")
    client.log_artifacts(run_id, str(root / "staging"))
    client.set_terminated(run_id, "FINISHED")
    return uri, run_id


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one fresh process; fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[-3:])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--no-write", action="store_true", help="Print the table; leave RESULTS.md alone.")
    args = ap.parse_args()
    load_start = os.getloadavg()
    HERE.mkdir(parents=True, exist_ok=True)
    x_path, m_path = make_data(args.n, args.dims)
    uri, run_id = make_store(x_path, m_path)

    import numpy as np
    import pandas as pd

    from mlviz.analysis.embedding import neighbourhood_quality

    x = np.load(x_path)
    labels = pd.read_csv(m_path)["label"].to_numpy()
    # `mlviz embed`, registered here too in case this checkout's cli.py does not list it yet
    mlviz_cmd = [sys.executable, "-c", "import sys; from mlviz.cli import main; from mlviz.commands.embed import "
                 "embed; main.add_command(embed); sys.argv[0] = 'mlviz'; main()"]
    rows, notes = [], []
    # (case, numba cache state, extra mlviz options); the plain UMAP call is the reference, run in the same session
    cases = [("umap.UMAP().fit_transform", "cold", []), ("umap.UMAP().fit_transform", "warm", []),
             ("mlviz embed --run", "cold", []), ("mlviz embed --run", "warm", []),
             ("mlviz embed --run --n-epochs 500", "warm", ["--n-epochs", "500"])]
    for case, state, extra in cases:
        cache = HERE / ("numba-baseline" if case.startswith("umap") else "numba-mlviz")
        if state == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "MLFLOW_TRACKING_URI": uri,
               "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
        if case.startswith("umap"):
            out = HERE / "baseline_coords.npy"
            wall, cpu = timed([sys.executable, "-c", BASELINE, str(x_path), str(out)], env)
            q = neighbourhood_quality(x, np.load(out), labels)
            what = "fit_transform of the array (500 epochs, pynndescent k-NN graph; no figure, nothing logged)"
        else:
            wall, cpu = timed([*mlviz_cmd, "embed", "--run", run_id, *extra], env)
            folder = HERE / "readback"
            shutil.rmtree(folder, ignore_errors=True)
            from mlflow import MlflowClient

            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
            got = Path(MlflowClient(uri).download_artifacts(run_id, "mlviz", str(folder)))
            summary = json.loads((got / "embedding_summary.json").read_text())
            qd = summary["embedding"]["quality"]
            q = neighbourhood_quality(x, np.load(got / "embedding" / "embedding_coords.npy"), labels)
            assert abs(q.trustworthiness - qd["trustworthiness"]) < 1e-9  # the same subsample, same number
            params = summary["embedding"]["params"]
            what = (f"read from the store, PCA to 50 dims, {params.get('knn_graph', '?')} 15-NN graph, "
                    f"UMAP {params['n_epochs']} epochs, quality, PNG + HTML + coords + metadata logged into the run")
            notes.append(f"`{case}` notes: {'; '.join(summary['embedding']['notes'])}")
        rows.append([f"`{case}`", state, fmt_s(wall), fmt_s(cpu), f"{q.trustworthiness:.3f}",
                     f"{q.knn_accuracy_2d:.3f} / {q.knn_accuracy_original:.3f}", what])
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    body = "\n".join([
        header_lines(f"{args.n:,} × {args.dims} float32 features (10 classes on a 16-d latent space, ReLU, noise); "
                     "every row a fresh Python process. Trustworthiness (k=5) on the same seeded 2,000-point "
                     "subsample for every row; 5-NN accuracy (5-fold, on a seeded 5,000 of the points) in 2-D / in "
                     "the original space. cold: empty numba cache folder; warm: the folder the cold row filled.",
                     load_start),
        "",
        table(["case", "numba cache", "wall", "CPU (user+sys)", "trustworthiness", "5-NN 2-D / original", "what"],
              rows),
        "",
        *[f"- {n}" for n in dict.fromkeys(notes)],
        *[f"- {n}" for n in BEFORE],
    ])
    print(body)
    if not args.no_write:
        update_results("bench_embedding", "Embedding (`bench/bench_embedding.py`)", body)


if __name__ == "__main__":
    main()
