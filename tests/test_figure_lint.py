"""The figure linter over every registered figure: sweep figures on hostile sweeps (long and unicode
names, 40 parameters, 1 run, an all-missing metric, 200 categories, object reprs, duplicated parameters,
10,000 runs, a two-stage sweep with real run names) and on the demo store, model figures on binary,
multi-class and multi-output predictions with long class names. Any clipped or overlapping text, absurd
size or caption promising an element the figure lacks fails the test with the figure and the problem."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pandas as pd
import pytest

from mlviz.figures import compute_figures
from mlviz.figures.sweep import REGISTRY, Context, SweepOptions
from mlviz.sections.sweep import analyse
from mlviz.sweep import build_sweep
from tests.figure_lint import lint_figure

N_BOOT = 30
BASE_TIME = 1_700_000_000_000
LONG = "model.encoder.transformer_block_07.attention.dropout_probability_of_the_residual_branch"
LONG_METRIC = "validation/top1_accuracy_on_the_held_out_imagenet_subset_after_ema_averaging"


# --------------------------------------------------------------------------- hostile sweeps
def _records(n: int, params, seed: int = 0, objective: str = "val_accuracy", extra_metrics=None,
             tags=None, names=None) -> list[dict]:
    """Run records with params(i, rng) → {name: str}; the objective depends on the numeric parameters."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = params(i, rng)
        numeric = [float(v) for v in p.values() if _is_number(v)]
        score = 0.8 + 0.05 * np.tanh(sum(np.log10(abs(v) + 1e-3) for v in numeric[:3]) / 5) + rng.normal(0, 0.02)
        metrics = {objective: float(score), "val_loss": float(1.1 - score + rng.normal(0, 0.01))}
        metrics.update((extra_metrics or (lambda i, s: {}))(i, score))
        out.append({"run_id": uuid.UUID(int=(seed << 80) | i).hex, "run_name": names(i) if names else f"trial-{i:05d}",
                    "experiment_id": "0", "status": "FINISHED", "lifecycle_stage": "active",
                    "start_time": BASE_TIME + i * 1000, "end_time": BASE_TIME + i * 1000 + 500,
                    "params": {k: str(v) for k, v in p.items()}, "metrics": metrics,
                    "tags": dict(tags(i) if tags else {})})
    return out


def _is_number(v) -> bool:
    try:
        float(v)
        return not isinstance(v, bool)
    except (TypeError, ValueError):
        return False


def long_unicode(n=60):
    def params(i, rng):
        return {LONG: round(float(rng.uniform(0, 0.5)), 3), "学习率_learning_rate": float(10 ** rng.uniform(-5, -1)),
                "Größe_der_Schicht_µ": int(rng.choice([32, 64, 128, 256])),
                "optimiser_with_a_very_long_descriptive_name": rng.choice(["adam_with_decoupled_weight_decay",
                                                                           "stochastic_gradient_descent_nesterov",
                                                                           "rmsprop_centered"]),
                "ünïcødé_flag": bool(rng.random() < 0.5)}
    return _records(n, params, objective=LONG_METRIC, extra_metrics=lambda i, s: {"Genauigkeit_über_alles_✓": s - 0.1})


def wide40(n=150):
    def params(i, rng):
        p = {f"p{j:02d}_{'log_' if j % 3 == 0 else ''}param": float(10 ** rng.uniform(-4, 0)) if j % 3 == 0
             else round(float(rng.uniform(0, 1)), 4) for j in range(34)}
        p.update({f"c{j}_choice": rng.choice(["a", "b", "c", "d"]) for j in range(4)})
        p.update({"use_bn": bool(rng.random() < 0.5), "depth": int(rng.integers(1, 9))})
        return p
    return _records(n, params, seed=1)


def one_run():
    return _records(1, lambda i, rng: {"learning_rate": 0.001, "optimizer": "adam"}, seed=2)


def missing_metric(n=40):
    return _records(n, lambda i, rng: {"learning_rate": float(10 ** rng.uniform(-4, -1)),
                                       "optimizer": rng.choice(["adam", "sgd"])}, seed=3,
                    extra_metrics=lambda i, s: {"val_auc": float("nan")})


def cat200(n=400):
    return _records(n, lambda i, rng: {"dataset_shard": f"shard_{i % 200:03d}",
                                       "learning_rate": float(10 ** rng.uniform(-4, -1)),
                                       "weight_decay": float(10 ** rng.uniform(-6, -2))}, seed=4)


def object_reprs(n=30):
    def params(i, rng):
        cls = ["keras.optimizers.SGD", "keras.optimizers.Adam", "keras.optimizers.RMSprop"][i % 3]
        return {"optimizer": f"<{cls} object at 0x7f82{rng.integers(0, 16**8):08x}>",
                "learning_rate": float(10 ** rng.uniform(-4, -1)), "batch_size": int(rng.choice([32, 64]))}
    return _records(n, params, seed=5)


def duplicated(n=40):
    def params(i, rng):
        lr = float(10 ** rng.uniform(-4, -1))
        return {"lr": lr, "learning_rate": lr, "dropout": round(float(rng.uniform(0, 0.5)), 3),
                "optimizer": rng.choice(["adam", "sgd"])}
    return _records(n, params, seed=6)


def huge(n=10_000):
    return _records(n, lambda i, rng: {"learning_rate": float(10 ** rng.uniform(-5, -1)),
                                       "optimizer": rng.choice(["adam", "sgd", "rmsprop", "adamw"]),
                                       "depth": int(rng.integers(1, 6)),
                                       "dropout": float(rng.uniform(0, 0.5))}, seed=7)


def two_stage(n1=40, n_cand=6, seeds=2):
    """Stage 1 of a sweep, then candidates trained again with seeds, named like real runs."""
    s1 = _records(n1, lambda i, rng: {"learning_rate": float(10 ** rng.uniform(-4, -1)),
                                      "optimizer": rng.choice(["adam", "sgd"]), "depth": int(rng.integers(1, 4))},
                  seed=8, tags=lambda i: {"mlviz.stage": "1"})
    best = sorted(s1, key=lambda r: -r["metrics"]["val_accuracy"])[:n_cand]
    criteria = ["top_n_overall", "top_k_per_value:optimizer", "second_metric:val_loss"]
    rng = np.random.default_rng(9)
    s2 = []
    for c, rec in enumerate(best):
        for s in range(seeds):
            i = len(s1) + len(s2)
            score = rec["metrics"]["val_accuracy"] + rng.normal(0.02, 0.01)
            s2.append({**rec, "run_id": uuid.UUID(int=(9 << 80) | i).hex, "run_name": f"cand{c:02d}-seed{s}",
                       "start_time": BASE_TIME + i * 1000, "params": {**rec["params"], "seed": str(s)},
                       "metrics": {"val_accuracy": float(score), "val_loss": float(1.1 - score)},
                       "tags": {"mlviz.stage": "2", "mlviz.selection_criterion": criteria[c % 3],
                                "mlviz.stage1_run_id": rec["run_id"]}})
    rows = [(r["run_id"], key, step, r["metrics"][key] * (1 - np.exp(-step / 3)))
            for r in s2 for key in ("val_accuracy", "val_loss") for step in range(1, 9)]
    return s1 + s2, pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


# --------------------------------------------------------------------------- render and lint
def lint_report(report, label: str) -> dict[str, list[str]]:
    """{figure path: problems} for every drawable figure of a report."""
    import matplotlib.pyplot as plt

    found = {}
    for fig_spec in report.figures:
        if fig_spec.draw is None:
            continue
        fig = fig_spec.draw(fig_spec.data)
        try:
            found[f"{label}:{fig_spec.section}/{fig_spec.name}"] = lint_figure(fig, fig_spec.caption)
        finally:
            plt.close(fig)
    return found


def _analyse(records, keys=None, histories=None, **kw):
    sweep = build_sweep(records, **kw)
    opts = SweepOptions(n_boot=N_BOOT)
    if keys is None:
        return analyse(sweep, opts, histories=histories)
    specs = [s for s in REGISTRY if s.key in keys]
    return compute_figures("visualize", specs, Context(sweep, opts, histories=histories))


HUGE_FIGURES = ("parameter_importance", "parallel_coordinates", "parameter_effects", "optimization_history",
                "metric_distributions")
SWEEPS = {
    "long_unicode": lambda: _analyse(long_unicode(), objective=LONG_METRIC),
    "wide40": lambda: _analyse(wide40()),
    "one_run": lambda: _analyse(one_run()),
    "missing_metric": lambda: _analyse(missing_metric()),
    "cat200": lambda: _analyse(cat200()),
    "object_reprs": lambda: _analyse(object_reprs()),
    "duplicated": lambda: _analyse(duplicated()),
    "huge": lambda: _analyse(huge(), keys=HUGE_FIGURES),
    "two_stage": lambda: _analyse(two_stage()[0], histories=two_stage()[1]),
}

TALLY: dict[str, int] = {"figures": 0, "problems": 0}


def _check(found: dict[str, list[str]]) -> None:
    TALLY["figures"] += len(found)
    TALLY["problems"] += sum(len(p) for p in found.values())
    bad = {k: v for k, v in found.items() if v}
    if os.environ.get("MLVIZ_LINT_REPORT"):
        with open(os.environ["MLVIZ_LINT_REPORT"], "a") as fh:
            for k, v in found.items():
                fh.write(f"{k}\t{len(v)}\t{' | '.join(v)}\n")
    assert not bad, "\n".join(f"{k}: {'; '.join(v)}" for k, v in bad.items())


@pytest.mark.parametrize("name", list(SWEEPS))
def test_sweep_figures_are_clean(name):
    report = SWEEPS[name]()
    found = lint_report(report, name)
    assert found, f"{name}: no figure was drawn ({report.skipped})"
    _check(found)


def test_demo_sweep_figures_are_clean(demo_store):
    """The session's quick demo (read only): every stage-1 and stage-2 figure of a real two-stage sweep."""
    from mlviz.sections.sweep import load_sweep
    from mlviz.store.read import Store

    uri = demo_store["uri"]
    sweep = load_sweep(uri, demo_store["experiment"])
    with Store(uri) as store:
        ids = sweep.runs.loc[sweep.runs["stage"] == 2, "run_id"].tolist()
        histories = store.histories(ids, sweep.metrics) if ids else None
    _check(lint_report(analyse(sweep, SweepOptions(n_boot=N_BOOT), histories=histories), "demo"))


# --------------------------------------------------------------------------- model figures
def _predictions(kind: str, n: int = 160, seed: int = 0):
    from mlviz.analysis.predictions import predictions_from_frame

    rng = np.random.default_rng(seed)
    classes = ["negative_control_sample", "positive_case_confirmed"] if kind == "binary" else \
        ["airplane_or_helicopter", "automobile", "bird_ünïcødé", "cat", "deer"]
    heads = ["left_ventricle_segment", "right"]
    ids = np.arange(n)
    frames = []
    for epoch in (1, 2, 3, 4):
        cols = {"sample_id": ids, "image_index": ids, "epoch": epoch}
        if kind == "binary":
            y = (np.random.default_rng(1).random(n) < 0.35).astype(int)
            z = epoch * 0.7 * (2 * y - 1) + rng.normal(0, 1.2, n)
            cols.update(label=y, score=1 / (1 + np.exp(-z)))
        else:
            for h in (heads if kind == "multioutput" else [None]):
                y = np.random.default_rng(2).integers(0, len(classes), n)
                z = epoch * 0.6 * np.eye(len(classes))[y] + rng.normal(0, 1.0, (n, len(classes)))
                p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
                pre = f"{h}_" if h else ""
                cols[f"label_{h}" if h else "label"] = y
                cols.update({f"prob_{pre}{c}": p[:, k] for k, c in enumerate(classes)})
        frames.append(pd.DataFrame(cols))
    per = pd.concat(frames, ignore_index=True)
    if kind == "multioutput":
        contract = {"task": "multioutput", "classes": classes, "image_column": "image_index",
                    "heads": {h: {"label": f"label_{h}", "scores": [f"prob_{h}_{c}" for c in classes]} for h in heads}}
    elif kind == "binary":
        contract = {"task": "binary", "label": "label", "scores": ["score"], "classes": classes,
                    "image_column": "image_index"}
    else:
        contract = {"task": "multiclass", "label": "label", "scores": [f"prob_{c}" for c in classes],
                    "classes": classes, "image_column": "image_index"}
    final = predictions_from_frame(per[per["epoch"] == 4].drop(columns=["epoch"]), contract=contract)
    return final, predictions_from_frame(per, contract=contract)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multioutput"])
def test_model_figures_are_clean(kind):
    from mlviz.figures.model import analyse_predictions
    from mlviz.figures.sweep import FigureSpec  # noqa: F401  (same registry machinery)
    from mlviz.report import Figure, Report

    final, per_epoch = _predictions(kind)
    images = np.random.default_rng(0).random((len(final.y_true), 1, 8, 8)).astype(np.float32)
    results, captions, renderers, skipped, _ = analyse_predictions(
        final, per_epoch, images, {"n_boot": N_BOOT, "hardest_k": 6, "gallery_per_case": 3})
    report = Report("best_model", [Figure(s, n, captions[(s, n)], r, renderers[(s, n)].render)
                                   for (s, n), r in results.items()])
    _check(lint_report(report, kind))


def test_zz_tally():
    """How many figures were linted (printed with -s)."""
    print(f"\nfigure lint: {TALLY['figures']} figures checked, {TALLY['problems']} problems")
    assert TALLY["figures"] > 0


def test_gallery_with_overlays_shows_the_input_beside_it():
    """With attribution overlays the case gallery draws each input twice (plain, then under its map)."""
    import matplotlib.pyplot as plt

    from mlviz.figures.model import analyse_predictions
    from mlviz.render.diagnostics import plot_case_gallery

    final, per_epoch = _predictions("multiclass")
    yy, xx = np.mgrid[0:8, 0:8]
    images = np.stack([((xx - 3.5) ** 2 + (yy - 3.5) ** 2 < 8 + i % 5).astype(np.float32)[None]
                       for i in range(len(final.y_true))])
    results, captions, *_ = analyse_predictions(final, per_epoch, images, {"n_boot": N_BOOT, "gallery_per_case": 3})
    gallery = results[("best_model", "case_gallery")]
    gallery.pixels.overlays = np.stack([np.exp(-((xx - 2) ** 2 + (yy - 5) ** 2) / 6)] * len(gallery.pixels.array))
    gallery.pixels["overlay"] = "Grad-CAM for the predicted class"
    fig = plot_case_gallery(gallery)
    try:
        assert lint_figure(fig, captions[("best_model", "case_gallery")]) == []
        n_cards = len(gallery.table)
        assert sum(len(ax.images) for ax in fig.axes) == 3 * n_cards  # input, input again, overlay
        texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
        assert "true" in texts and "pred" in texts
    finally:
        plt.close(fig)


def test_importance_on_a_tpe_sweep_is_honest_and_agrees_with_fanova():
    """On a TPE sweep (parameters not sampled independently) main effects overlap: the figure says so with
    their real sum and shows the forest's R² as what the parameters explain together; the ranking agrees
    with Optuna's fANOVA on the top two parameters (here Spearman 0.4–0.7 over three fANOVA seeds).
    """
    import matplotlib.pyplot as plt
    import optuna
    from scipy.stats import spearmanr

    from mlviz.analysis.stage1 import parameter_importance
    from mlviz.render.stage1 import plot_importance

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    effect = {"adam": 0.03, "adamw": 0.04, "sgd": -0.06}

    def objective(t):
        lr = t.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
        opt = t.suggest_categorical("optimizer", list(effect))
        depth = t.suggest_int("depth", 1, 5)
        dropout = t.suggest_float("dropout", 0.0, 0.5)
        t.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        noise = np.random.default_rng(t.number).normal(0, 0.01)
        return 0.9 - 0.05 * (np.log10(lr) + 3) ** 2 + effect[opt] + 0.01 * depth - 0.02 * dropout + noise

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=48)
    records = [{"run_id": uuid.UUID(int=t.number + 1).hex, "run_name": f"trial-{t.number}", "status": "FINISHED",
                "lifecycle_stage": "active", "start_time": t.number, "tags": {},
                "params": {k: str(v) for k, v in t.params.items()}, "metrics": {"val_accuracy": t.value}}
               for t in study.trials]
    imp = parameter_importance(build_sweep(records), n_boot=100)
    assert imp.main_effects_overlap and imp.main_effects_total > 1.0 and 0 < imp.forest_r2 < 1
    assert imp.interactions is None and imp.unexplained == pytest.approx(1 - imp.forest_r2)
    names = sorted(imp.params)
    ours = [imp.normalized[imp.params.index(n)] for n in names]
    rhos = []
    for seed in range(3):
        fanova = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
        assert imp.params[0] in list(fanova)[:2] and next(iter(fanova)) in imp.params[:2], (imp.params, fanova)
        rhos.append(spearmanr(ours, [fanova[n] for n in names])[0])
    print(f"\nTPE sweep: Spearman(ours, fANOVA) over fANOVA seeds {np.round(rhos, 2).tolist()}")
    assert min(rhos) >= 0.3, rhos
    fig = plot_importance(imp)
    try:
        assert lint_figure(fig) == []
        texts = " ".join(t.get_text() for t in fig.findobj(plt.Text))
        assert f"main effects overlap (sum {imp.main_effects_total:.0%})" in texts
        assert f"forest OOB R²): {imp.forest_r2:.0%}" in texts
    finally:
        plt.close(fig)


def test_the_linter_finds_what_it_is_meant_to_find():
    """The guard is not vacuous: a clipped title, two overlapping labels, a strip-shaped figure and a
    caption promising a band that is not drawn are each reported; a clean figure is not."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 2), dpi=100)
    ax.plot([0, 1], [0, 1])
    fig.suptitle("a title far too long for its figure " * 6)
    ax.text(0.5, 0.5, "first label")
    ax.text(0.52, 0.5, "second label")
    problems = lint_figure(fig, "The curve with its 95% bootstrap band.")
    plt.close(fig)
    assert any("beyond the figure" in p for p in problems), problems
    assert any("'first label' and 'second label' overlap" in p for p in problems), problems
    assert any("aspect 1200×200" in p for p in problems), problems
    assert any("interval/band" in p for p in problems), problems
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.fill_between([0, 1], [0, 0.5], [0.5, 1], alpha=0.2)
    ax.set_title("a clean figure")
    assert lint_figure(fig, "The curve with its 95% bootstrap band.") == []
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.set_title("\U00013000 hieroglyph")  # in no font here: drawn as a box
    problems = lint_figure(fig)
    plt.close(fig)
    assert any("drawn as boxes" in p for p in problems), problems


def test_cjk_parameter_names_draw_with_a_cjk_font():
    """A sweep with Chinese and Korean names draws them (the style falls back to an installed CJK font;
    .ci/run installs Debian's fonts-wqy-microhei), not as boxes."""
    import matplotlib.pyplot as plt

    from mlviz.render import style

    assert style.cjk_fonts(), "no CJK font installed (Debian: fonts-wqy-microhei or fonts-noto-cjk)"
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.set_title("学习率 learning rate 학습률 バッチサイズ")
    assert lint_figure(fig) == []
    plt.close(fig)
