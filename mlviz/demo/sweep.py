"""`mlviz demo`: a real two-stage sweep on the digits, logged to MLflow.

Stage 1: an Optuna TPE search, each trial a nested run under a `stage1` parent with per-epoch
histories. Selection: `mlviz.analysis.selection.select_candidates` on the stage-1 runs read back from the
store. Stage 2: each candidate trained longer with several seeds under a `stage2` parent, tagged with why
it was picked and its stage-1 run. Every stage-2 run logs its validation predictions (final and per
epoch), the validation images and a state dict, and (first seed) Grad-CAM heatmaps of four validation
images every few epochs with the epoch as step; the best one also logs an MLflow PyTorch model and
penultimate-layer embeddings.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlviz.errors import MlvizError

OBJECTIVE = "val_accuracy"
DEMO_TAG = "mlviz.demo"


@dataclass(frozen=True)
class Preset:
    n_trials: int
    stage1_epochs: int
    stage2_epochs: int
    seeds: tuple[int, ...]
    per_value_params: tuple[str, ...]
    top_n: int
    second_k: int
    heatmap_every: int  # stage-2 heatmaps at epoch 1 and every N epochs (first seed of each candidate)


PRESETS = {
    "default": Preset(n_trials=48, stage1_epochs=4, stage2_epochs=12, seeds=(0, 1),
                      per_value_params=("optimizer", "activation"), top_n=3, second_k=1, heatmap_every=4),
    "quick": Preset(n_trials=48, stage1_epochs=1, stage2_epochs=3, seeds=(0, 1),
                    per_value_params=("optimizer",), top_n=2, second_k=1, heatmap_every=3),
}


@dataclass
class DemoOutcome:
    experiment_id: str
    experiment: str
    stage1_parent: str
    stage2_parent: str
    best_run_id: str
    n_stage1: int
    n_stage2: int
    seconds: float
    candidates: list[dict] = field(default_factory=list)


def suggest(trial) -> dict:
    """The search space: every kind of hyperparameter."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "channels": trial.suggest_int("channels", 8, 32, step=8),
        "depth": trial.suggest_int("depth", 1, 3),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd", "adamw"]),
        "activation": trial.suggest_categorical("activation", ["relu", "gelu", "tanh"]),
        "augment": trial.suggest_categorical("augment", [False, True]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
    }


def _log_epoch(client, run_id: str, epoch_result, t0: int) -> None:
    client.log(run_id, histories={k: [(epoch_result.epoch, float(v))] for k, v in epoch_result.metrics.items()},
               timestamp=t0 + epoch_result.epoch)


def predictions_frame(task, probs: np.ndarray, epoch: int | None = None) -> pd.DataFrame:
    """The predictions contract: sample id, image reference, label(s), score/probability columns."""
    cols: dict[str, object] = {"sample_id": task.val_ids, "image_index": np.arange(len(task.val_ids))}
    if task.task == "binary":
        cols["label"] = task.y_val
        cols["score"] = probs
        cols["pred"] = (probs >= 0.5).astype(int)
    elif task.task == "multioutput":
        for h, head in enumerate(task.head_names):
            cols[f"label_{head}"] = task.y_val[:, h]
            for c, name in enumerate(task.class_names):
                cols[f"prob_{head}_{name}"] = probs[:, h, c]
            cols[f"pred_{head}"] = probs[:, h].argmax(1)
    else:
        cols["label"] = task.y_val
        for c, name in enumerate(task.class_names):
            cols[f"prob_{name}"] = probs[:, c]
        cols["pred"] = probs.argmax(1)
    # Grouping columns for slice metrics: how much ink the image holds, and the digit itself.
    ink = task.x_val.reshape(len(task.x_val), -1).mean(axis=1)
    cols["ink_level"] = np.array(["light", "medium", "heavy"])[np.searchsorted(np.quantile(ink, [1 / 3, 2 / 3]), ink)]
    if task.task != "multiclass" and task.val_digits is not None:
        cols["digit"] = task.val_digits
    frame = pd.DataFrame(cols)
    if epoch is not None:
        frame.insert(0, "epoch", epoch)
    return frame


def contract(task) -> dict:
    """How to read the predictions CSV (for the diagnostics: which columns are labels and scores)."""
    if task.task == "binary":
        return {"task": "binary", "label": "label", "scores": ["score"], "classes": task.class_names,
                "image_column": "image_index", "images": "data/val_images.npz"}
    if task.task == "multioutput":
        return {"task": "multioutput", "heads": {h: {"label": f"label_{h}",
                                                      "scores": [f"prob_{h}_{c}" for c in task.class_names]}
                                                  for h in task.head_names},
                "classes": task.class_names, "image_column": "image_index", "images": "data/val_images.npz"}
    return {"task": "multiclass", "label": "label", "scores": [f"prob_{c}" for c in task.class_names],
            "classes": task.class_names, "image_column": "image_index", "images": "data/val_images.npz"}


def run_demo(tracking_uri: str, experiment: str | None = None, task_name: str = "multiclass",
             preset: str = "default", seed: int = 0, replace: bool = False, echo=print,
             progress: bool = False) -> DemoOutcome:
    """Train and log the two-stage demo sweep; `progress`: bars for trials and stage-2 runs (a terminal)."""
    from mlviz.store.write import open_for_writing

    store, writer = open_for_writing(tracking_uri)  # an old-schema store is refused before any training
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        with store:
            return _run_demo(writer, tracking_uri, experiment, task_name, preset, seed, replace, echo, progress)
    finally:  # the demo trains on one thread, deterministically; the caller's process gets its settings back
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _run_demo(client, tracking_uri, experiment, task_name, preset, seed, replace, echo, progress) -> DemoOutcome:
    import optuna
    import torch

    from mlviz.analysis.selection import select_candidates
    from mlviz.demo.data import load_task
    from mlviz.demo.train import train
    from mlviz.publish import progress_bar
    from mlviz.sections.sweep import load_sweep

    cfg = PRESETS[preset]
    experiment = experiment or f"mlviz-demo-{task_name}"
    started = time.perf_counter()
    torch.set_num_threads(1)  # tiny model: one thread is fastest and makes runs repeatable
    torch.use_deterministic_algorithms(True)
    task = load_task(task_name, seed=seed)
    exp_id = client.experiment(experiment)
    old = client.search([exp_id], filter_string=f"tags.`{DEMO_TAG}` = '1'")
    if old and not replace:
        raise MlvizError(f"experiment '{experiment}' already holds a demo sweep ({len(old)} runs); "
                         "pass --replace to delete it first, or --experiment NAME")
    for run in old:
        client.delete_run(run.info.run_id)
    common = {DEMO_TAG: "1", "mlviz.task": task_name, "mlviz.preset": preset}
    sweep_tags = {"mlviz.objective": OBJECTIVE, "mlviz.mode": "max"}

    def new_run(name, parent=None, tags=None):
        t = {**common, **(tags or {})}
        if parent:
            t["mlflow.parentRunId"] = parent
        return client.create_run(exp_id, name, t)

    # ---------------------------------------------------------------- stage 1
    stage1 = new_run("stage1", tags={"mlviz.stage": "1", **sweep_tags})
    echo(f"stage 1: {cfg.n_trials} Optuna trials × {cfg.stage1_epochs} epochs ({task_name})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    bar = progress_bar(cfg.n_trials, "stage 1 trials", progress, unit="trial")

    def objective(trial):
        params = suggest(trial)
        run_id = new_run(f"trial-{trial.number:03d}", stage1, {"mlviz.stage": "1", "optuna.trial": str(trial.number)})
        client.log(run_id, params={**params, "seed": seed})
        t0 = int(time.time() * 1000)
        result = train(params, task, cfg.stage1_epochs, seed=seed,
                       on_epoch=lambda e: _log_epoch(client, run_id, e, t0))
        client.finish(run_id)
        bar.update(1)
        value = result.final[OBJECTIVE]
        return value if np.isfinite(value) else 0.0

    study.optimize(objective, n_trials=cfg.n_trials)
    bar.close()
    client.finish(stage1)

    # ---------------------------------------------------------------- selection
    sweep = load_sweep(tracking_uri, experiment=exp_id, parent_run=stage1, metric=OBJECTIVE, mode="max")
    chosen = select_candidates(sweep, per_value_k=1, top_n=cfg.top_n, second_metric="val_f1_macro",
                               second_k=cfg.second_k, per_value_params=list(cfg.per_value_params))
    picks = chosen.picks.to_dict(orient="records")
    echo(f"selected {len(picks)} candidates: " + ", ".join(p["criterion"] for p in picks))

    # ---------------------------------------------------------------- stage 2
    stage2 = new_run("stage2", tags={"mlviz.stage": "2", **sweep_tags})
    by_run = sweep.runs.set_index("run_id")
    param_names = [n for n in sweep.params if n != "seed"]
    best = (-np.inf, None, None, None)
    echo(f"stage 2: {len(picks)} candidates × {len(cfg.seeds)} seeds × {cfg.stage2_epochs} epochs")
    bar = progress_bar(len(picks) * len(cfg.seeds), "stage 2 runs", progress, unit="run")
    for rank, pick in enumerate(picks, start=1):
        row = by_run.loc[pick["run_id"]]
        params = {n: _native(row[sweep.params[n].column]) for n in param_names}
        for s in cfg.seeds:
            run_id = new_run(f"cand{rank:02d}-seed{s}", stage2, {
                "mlviz.stage": "2", "mlviz.selection_criterion": pick["criterion"],
                "mlviz.stage1_run_id": pick["run_id"], "mlviz.stage2_rank": str(rank)})
            client.log(run_id, params={**params, "seed": s}, metrics={f"stage1_{OBJECTIVE}": float(pick["score"])})
            t0 = int(time.time() * 1000)
            cams = _heatmap_logger(client, run_id, task, cfg.heatmap_every) if s == cfg.seeds[0] else None

            def on_epoch(e, r=run_id, t=t0, cams=cams):
                _log_epoch(client, r, e, t)
                if cams:
                    cams(e)

            result = train(params, task, cfg.stage2_epochs, seed=s, on_epoch=on_epoch)
            _log_predictions(client, run_id, task, result)
            client.finish(run_id)
            bar.update(1)
            if result.final[OBJECTIVE] > best[0]:
                best = (result.final[OBJECTIVE], run_id, result, params)
    bar.close()
    client.finish(stage2)
    _log_best_model(client, best[1], task, best[2])
    seconds = time.perf_counter() - started
    echo(f"best: run {best[1]} {OBJECTIVE}={best[0]:.4f}; demo took {seconds:.0f} s")
    return DemoOutcome(exp_id, experiment, stage1, stage2, best[1], cfg.n_trials, len(picks) * len(cfg.seeds),
                       seconds, picks)


HEATMAP_KEY = "mlviz_heatmaps"
HEATMAP_IMAGES = 4


def _heatmap_logger(client, run_id: str, task, every: int):
    """An on_epoch callback: Grad-CAM of the same validation images at epoch 1 and every `every` epochs, published
    into the run by step, so the MLflow UI's image grid shows how the maps evolve (and compares the candidates
    under one key). None when the attribution extra is not installed."""
    from mlviz.sections.heatmaps import attribution_available

    if attribution_available():
        return None
    from mlviz.publish import IntoRun
    from mlviz.sections.training_heatmaps import HeatmapCallback

    state: dict = {}

    def on_epoch(e) -> None:
        if "cb" not in state:
            k = HEATMAP_IMAGES
            state["cb"] = HeatmapCallback(
                e.model, task.x_val[:k], every_n_epochs=1, labels=task.y_val[:k], sample_ids=task.val_ids[:k],
                head_names=task.head_names, max_images=k, to=IntoRun(client.store, run_id), key=HEATMAP_KEY)
        if e.epoch == 1 or e.epoch % every == 0:
            state["cb"](e.epoch)

    return on_epoch


def _native(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def _log_predictions(client, run_id: str, task, result) -> None:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "predictions").mkdir()
        (root / "data").mkdir()
        (root / "checkpoints").mkdir()
        predictions_frame(task, result.epochs[-1].probs).to_csv(root / "predictions/val_predictions.csv", index=False)
        pd.concat([predictions_frame(task, e.probs, e.epoch) for e in result.epochs]).to_csv(
            root / "predictions/val_predictions_per_epoch.csv", index=False)
        (root / "predictions/contract.json").write_text(json.dumps(contract(task), indent=1))
        np.savez_compressed(root / "data/val_images.npz", images=task.x_val, labels=task.y_val,
                            sample_ids=task.val_ids, class_names=np.array(task.class_names),
                            head_names=np.array(task.head_names))
        torch.save(result.model.state_dict(), root / "checkpoints/model_state.pt")
        (root / "checkpoints/model_config.json").write_text(json.dumps(
            {"factory": "mlviz.demo.model:build_model", "config": result.config}, indent=1))
        client.log_artifacts(run_id, str(root))


def _log_best_model(client, run_id: str, task, result) -> None:
    from mlviz.demo.train import embeddings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "embeddings"
        root.mkdir()
        np.save(root / "penultimate.npy", embeddings(result.model, task.x_val))
        meta = predictions_frame(task, result.epochs[-1].probs)
        meta.to_csv(root / "metadata.csv", index=False)
        client.log_artifacts(run_id, str(Path(tmp)))
    client.log_pytorch_model(run_id, result.model, "model", input_example=task.x_val[:2])
    client.set_tags(run_id, {"mlviz.best_model": "1"})
    client.finish(run_id)
