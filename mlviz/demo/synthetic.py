"""A generated sweep with known structure, for tests, benchmarks and a first look without training.

`synthetic_records` is pure: run records (as the store layer produces them) whose objective depends
strongly on `learning_rate` (log-scale), moderately on `optimizer` and `depth`, weakly on an
`augment` × `dropout` interaction, and not at all on `noise_param`. `log_synthetic_sweep` writes such a
sweep, with per-epoch histories, into a real MLflow store.
"""

from __future__ import annotations

import uuid

import numpy as np

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")


def synthetic_records(n_runs: int = 200, seed: int = 0, n_steps: int = 0) -> list[dict]:
    """Plain run records; `histories` (key → list of values per step) when `n_steps` > 0."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-5, -1, n_runs)
    optimizer = rng.choice(OPTIMIZERS, n_runs)
    depth = rng.integers(1, 6, n_runs)
    dropout = rng.uniform(0.0, 0.5, n_runs)
    augment = rng.random(n_runs) < 0.5
    noise_param = rng.uniform(0, 1, n_runs)
    opt_effect = {"adam": 0.04, "adamw": 0.05, "rmsprop": 0.0, "sgd": -0.05}
    score = (
        0.9
        - 0.06 * (np.log10(lr) + 3) ** 2
        + np.array([opt_effect[o] for o in optimizer])
        + 0.01 * depth
        + 0.03 * np.where(augment, dropout, -dropout)
        + rng.normal(0, 0.01, n_runs)
    )
    val_loss = np.clip(1.2 - score, 0.01, None) + rng.normal(0, 0.005, n_runs)
    records = []
    base_time = 1_700_000_000_000
    for i in range(n_runs):
        metrics = {
            "val_accuracy": float(score[i]),
            "val_loss": float(val_loss[i]),
            "train_loss": float(val_loss[i] * 0.8),
            "val_f1": float(score[i] - 0.02),
        }
        rec = {
            "run_id": uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i).hex,
            "run_name": f"trial-{i:05d}",
            "experiment_id": "0",
            "status": "FINISHED",
            "lifecycle_stage": "active",
            "start_time": base_time + i * 1000,
            "end_time": base_time + i * 1000 + 500,
            "params": {
                "learning_rate": repr(float(lr[i])),
                "optimizer": str(optimizer[i]),
                "depth": str(int(depth[i])),
                "dropout": repr(float(dropout[i])),
                "augment": str(bool(augment[i])),
                "noise_param": repr(float(noise_param[i])),
                "batch_size": "64",
            },
            "metrics": metrics,
            "tags": {},
        }
        if n_steps:
            t = np.arange(1, n_steps + 1)
            frac = 1 - np.exp(-3 * t / n_steps)
            rec["histories"] = {
                "val_accuracy": list(metrics["val_accuracy"] * frac),
                "val_loss": list(metrics["val_loss"] / frac),
                "train_loss": list(metrics["train_loss"] / frac),
            }
            for key, hist in rec["histories"].items():
                metrics[key] = float(hist[-1])
        records.append(rec)
    return records


def log_synthetic_sweep(
    tracking_uri: str, experiment: str = "synthetic-sweep", n_runs: int = 200, n_steps: int = 0, seed: int = 0
) -> str:
    """Log a synthetic sweep (under a `stage1` parent run) into a store; returns the experiment id."""
    from mlviz.store.write import open_for_writing

    store, writer = open_for_writing(tracking_uri)
    with store:
        exp_id = writer.experiment(experiment)
        parent = writer.create_run(exp_id, "stage1", start_time=1_700_000_000_000)
        for rec in synthetic_records(n_runs, seed, n_steps):
            run_id = writer.create_run(exp_id, rec["run_name"], {"mlflow.parentRunId": parent},
                                       start_time=rec["start_time"])
            writer.log(run_id, metrics=rec["metrics"], params=rec["params"], tags={"mlviz.synthetic": "1"},
                       histories={k: list(enumerate(map(float, h))) for k, h in rec.get("histories", {}).items()},
                       timestamp=rec["start_time"])
            writer.finish(run_id, end_time=rec["end_time"])
        writer.finish(parent)
    return exp_id
