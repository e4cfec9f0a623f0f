"""The best_model/ and training_progress/ figures: registry entries and `analyse_predictions`.

    results, captions, renderers, skipped, headline = analyse_predictions(preds, per_epoch, images, options)

- `results`: {(section, file stem): result dataclass} for every figure that applies;
- `captions`: {(section, stem): caption}; `renderers`: {(section, stem): FigureSpec} (`spec.render(result)`);
- `skipped`: [{"section", "figure", "reason"}] for the figures that do not apply;
- `headline`: {"mlviz.auc": ..., "mlviz.<head>.auc": ...} numbers to log as MLflow metrics.

Options (all optional): n_boot (1000), seed (0), level (0.95), n_bins (15), threshold ("auto": 0.5 for
probabilities, else max-F1; or "max_f1", "youden", a number), progress_threshold ("max_f1"), progress_n_boot
(min(n_boot, 200)), group_columns (default: detected), hardest_k (12), gallery_per_case (6), checkpoints (6),
trajectories_per_class (15).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlviz.analysis import NotApplicable
from mlviz.analysis.predictions import Predictions
from mlviz.figures import FigureSpec, compute_all

BEST = "best_model"
PROGRESS = "training_progress"
RD = "mlviz.render.diagnostics"
RP = "mlviz.render.progress"


@dataclass
class DiagnosticsContext:
    """What a diagnostics figure may use: the final predictions, per-epoch predictions, images, options."""

    predictions: Predictions
    per_epoch: Predictions | None = None
    images: np.ndarray | None = None
    options: dict = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def opt(self, key: str, default=None):
        return self.options.get(key, default)

    @property
    def boot(self) -> dict:
        return {"n_boot": int(self.opt("n_boot", 1000)), "seed": int(self.opt("seed", 0)),
                "level": float(self.opt("level", 0.95))}


# --------------------------------------------------------------------------- best_model computes
def _roc(ctx):
    from mlviz.analysis.diagnostics import roc_analysis

    return roc_analysis(ctx.predictions, **ctx.boot)


def _pr(ctx):
    from mlviz.analysis.diagnostics import pr_analysis

    return pr_analysis(ctx.predictions, **ctx.boot)


def _thresholds(ctx):
    from mlviz.analysis.diagnostics import threshold_analysis

    return threshold_analysis(ctx.predictions, ctx.opt("threshold", "auto"))


def _distributions(ctx):
    from mlviz.analysis.diagnostics import score_distributions

    return score_distributions(ctx.predictions, threshold=ctx.opt("threshold", "auto"))


def _confusion(ctx):
    from mlviz.analysis.diagnostics import confusion_analysis

    return confusion_analysis(ctx.predictions, ctx.opt("threshold", "auto"))


def _calibration(ctx):
    from mlviz.analysis.calibration import calibration_analysis

    return calibration_analysis(ctx.predictions, n_bins=int(ctx.opt("n_bins", 15)), **ctx.boot)


def _slices(ctx):
    from mlviz.analysis.diagnostics import slice_metrics

    if ctx.predictions.task == "regression":
        raise NotApplicable("regression predictions: see regression_error_by_slice")
    return slice_metrics(ctx.predictions, ctx.opt("group_columns"), threshold=ctx.opt("threshold", "auto"),
                         **ctx.boot)


def _hardest(ctx):
    from mlviz.analysis.diagnostics import hardest_samples

    return hardest_samples(ctx.predictions, int(ctx.opt("hardest_k", 12)), ctx.opt("threshold", "auto"), ctx.images)


def _gallery(ctx):
    from mlviz.analysis.diagnostics import case_gallery

    per = int(ctx.opt("gallery_per_case", 6 if ctx.predictions.task != "multioutput" else 4))
    return case_gallery(ctx.predictions, per, ctx.opt("threshold", "auto"), ctx.images)


def _reg_fit(ctx):
    from mlviz.analysis.diagnostics import regression_fit

    return regression_fit(ctx.predictions, **ctx.boot)


def _reg_residuals(ctx):
    from mlviz.analysis.diagnostics import regression_residuals

    return regression_residuals(ctx.predictions)


def _reg_slices(ctx):
    from mlviz.analysis.diagnostics import regression_error_by_slice

    return regression_error_by_slice(ctx.predictions, ctx.opt("group_columns"), **ctx.boot)


# --------------------------------------------------------------------------- training_progress computes
def _progress_kw(ctx) -> dict:
    return {"threshold": ctx.opt("progress_threshold", "max_f1")}


def _metrics_evolution(ctx):
    from mlviz.analysis.progress import metrics_evolution

    b = ctx.boot
    n_boot = int(ctx.opt("progress_n_boot", min(b["n_boot"], 200)))
    return metrics_evolution(ctx.per_epoch, n_boot=n_boot, seed=b["seed"], level=b["level"],
                             n_bins=int(ctx.opt("n_bins", 15)), **_progress_kw(ctx))


def _score_evolution(ctx):
    from mlviz.analysis.progress import score_evolution

    return score_evolution(ctx.per_epoch, int(ctx.opt("checkpoints", 6)), **_progress_kw(ctx))


def _trajectories(ctx):
    from mlviz.analysis.progress import sample_trajectories

    return sample_trajectories(ctx.per_epoch, int(ctx.opt("trajectories_per_class", 15)), **_progress_kw(ctx))


def _late(ctx):
    from mlviz.analysis.progress import late_bloomers

    return late_bloomers(ctx.per_epoch, images=ctx.images, **_progress_kw(ctx))


def _boundary(ctx):
    from mlviz.analysis.progress import decision_boundary_evolution

    return decision_boundary_evolution(ctx.per_epoch, **_progress_kw(ctx))


BEST_MODEL_FIGURES: list[FigureSpec] = [
    FigureSpec(BEST, "roc_curve",
               "ROC curve with AUC, its 95% bootstrap interval and a pointwise bootstrap band; ● Youden J and "
               "■ max-F1 operating points. Multi-class: one-vs-rest per class and the macro AUC; one panel per head.",
               "two classes among the labels", _roc, f"{RD}:plot_roc_curve"),
    FigureSpec(BEST, "precision_recall",
               "Precision-recall curve with average precision (95% bootstrap interval) and the no-skill baseline "
               "(the positive rate); the max-F1 point marked.",
               "two classes among the labels", _pr, f"{RD}:plot_precision_recall"),
    FigureSpec(BEST, "metrics_vs_threshold",
               "Precision, recall, F1, accuracy and specificity against the threshold (positive when score >= "
               "threshold), with a threshold table (TP/FP/TN/FN, specificity, support).",
               "two classes among the labels", _thresholds, f"{RD}:plot_metrics_vs_threshold"),
    FigureSpec(BEST, "score_distributions",
               "Class-conditional distributions of the score (multi-class: each class's probability, true class "
               "vs the rest), the threshold and the KS separation.",
               "classification predictions", _distributions, f"{RD}:plot_score_distributions"),
    FigureSpec(BEST, "confusion_matrix",
               "Counts and row percentages at the chosen threshold (0.5 for probabilities, else max-F1; the "
               "max-F1 matrix beside it when different); multi-class: arg-max.",
               "classification predictions", _confusion, f"{RD}:plot_confusion_matrix"),
    FigureSpec(BEST, "calibration",
               "Reliability diagram with the count per bin; ECE (equal-width and equal-mass bins), MCE, "
               "classwise ECE, Brier score and NLL with 95% bootstrap intervals.",
               "probabilities", _calibration, f"{RD}:plot_calibration"),
    FigureSpec(BEST, "slice_metrics",
               "Metrics per value of each grouping column with 95% bootstrap intervals, worst slice first.",
               "a grouping column", _slices, f"{RD}:plot_slice_metrics"),
    FigureSpec(BEST, "hardest_samples",
               "The most confidently wrong samples: false negatives with the lowest scores, false positives "
               "with the highest (multi-class: lowest true-class probability), with images when available.",
               "a misclassified sample", _hardest, f"{RD}:plot_hardest_samples"),
    FigureSpec(BEST, "case_gallery",
               "TP / TN / FP / FN examples (multi-class: correct / wrong) spread over each case's score range.",
               "classification predictions", _gallery, f"{RD}:plot_case_gallery"),
    FigureSpec(BEST, "regression_predicted_vs_true",
               "Predicted against true values with y = x; MAE, RMSE, R² and bias with 95% bootstrap intervals.",
               "regression predictions", _reg_fit, f"{RD}:plot_regression_predicted_vs_true"),
    FigureSpec(BEST, "regression_residuals",
               "Residuals (predicted − true) against the prediction with binned mean ± sd, and their histogram.",
               "regression predictions", _reg_residuals, f"{RD}:plot_regression_residuals"),
    FigureSpec(BEST, "regression_error_by_slice",
               "MAE, RMSE and bias per value of each grouping column with 95% intervals, worst slice first.",
               "regression predictions with a grouping column", _reg_slices, f"{RD}:plot_slice_metrics"),
]

PROGRESS_FIGURES: list[FigureSpec] = [
    FigureSpec(PROGRESS, "metrics_evolution",
               "AUC (95% bootstrap interval), AP, accuracy, F1, precision, recall and calibration per epoch, "
               "each epoch at its own threshold; the best epoch marked.",
               "per-epoch predictions", _metrics_evolution, f"{RP}:plot_metrics_evolution"),
    FigureSpec(PROGRESS, "score_evolution",
               "Class-conditional score distributions at checkpoint epochs, with each epoch's threshold.",
               "per-epoch predictions from two epochs", _score_evolution, f"{RP}:plot_score_evolution"),
    FigureSpec(PROGRESS, "sample_trajectories",
               "Scores of individual samples across epochs (spread over the final score range), each class's "
               "median and IQR, and the per-epoch threshold.",
               "per-epoch predictions from two epochs", _trajectories, f"{RP}:plot_sample_trajectories"),
    FigureSpec(PROGRESS, "late_bloomers",
               "Samples whose classification flipped, judged at each epoch's own threshold: how many, when "
               "they were learned, and the latest bloomers.",
               "per-epoch predictions from two epochs", _late, f"{RP}:plot_late_bloomers"),
    FigureSpec(PROGRESS, "decision_boundary_evolution",
               "The threshold and the separation of the classes' scores (medians, IQR, d') per epoch.",
               "per-epoch predictions from two epochs", _boundary, f"{RP}:plot_decision_boundary_evolution"),
]


# --------------------------------------------------------------------------- headline metrics
def _metric_name(head: str, name: str) -> str:
    if not head:
        return f"mlviz.{name}"
    return f"mlviz.{re.sub(r'[^A-Za-z0-9_.-]+', '_', head)}.{name}"


def headline_metrics(predictions: Predictions, results: dict, threshold="auto") -> dict[str, float]:
    """Numbers for MLflow: mlviz.auc, .ap, .ece, .ece_equal_mass, .mce, .classwise_ece, .brier, .nll,
    .accuracy, .f1 (binary), .threshold (binary), .n_samples; per head `mlviz.<head>.<name>` and, over the
    heads of a multi-output model, their mean as `mlviz.<name>`. Regression: .mae, .rmse, .r2, .bias."""
    from mlviz.analysis.diagnostics import head_threshold, predicted_labels

    out: dict[str, float] = {"mlviz.n_samples": float(predictions.n)}
    if predictions.task == "regression":
        fit = results.get((BEST, "regression_predicted_vs_true"))
        if fit is not None:
            for r in fit.metrics.to_dict(orient="records"):
                out[f"mlviz.{r['metric']}"] = float(r["value"])
        return out
    per_head: dict[str, dict[str, float]] = {}
    roc, pr, cal = (results.get((BEST, k)) for k in ("roc_curve", "precision_recall", "calibration"))
    for head in predictions.heads():
        m: dict[str, float] = {}
        t, _ = head_threshold(head, threshold)
        pred = predicted_labels(head, t)
        m["accuracy"] = float((pred == head.y).mean())
        if head.kind == "binary":
            tp = int(((pred == 1) & (head.y == 1)).sum())
            denom = int((pred == 1).sum() + (head.y == 1).sum())
            m["f1"] = 2 * tp / denom if denom else 0.0
            m["threshold"] = float(t)
        if roc is not None:
            if head.kind == "binary":
                sub = roc.summary[roc.summary["head"] == head.name]
                if len(sub):
                    m["auc"] = float(sub["auc"].iloc[0])
            elif len(roc.macro):
                sub = roc.macro[roc.macro["head"] == head.name]
                if len(sub):
                    m["auc"] = float(sub["auc"].iloc[0])
        if pr is not None:
            src = pr.summary if head.kind == "binary" else pr.macro
            sub = src[src["head"] == head.name] if len(src) else src
            if len(sub):
                m["ap"] = float(sub["ap"].iloc[0])
        if cal is not None:
            for r in cal.metrics[cal.metrics["head"] == head.name].to_dict(orient="records"):
                m[r["metric"]] = float(r["value"])
        per_head[head.name] = m
    if predictions.task == "multioutput":
        for head, m in per_head.items():
            out.update({_metric_name(head, k): v for k, v in m.items()})
        keys = sorted({k for m in per_head.values() for k in m if k != "threshold"})
        for k in keys:
            vals = [m[k] for m in per_head.values() if k in m and np.isfinite(m[k])]
            if vals:
                out[f"mlviz.{k}"] = float(np.mean(vals))
    else:
        out.update({_metric_name("", k): v for k, v in next(iter(per_head.values())).items()})
    return {k: v for k, v in out.items() if v is not None and np.isfinite(v)}


# --------------------------------------------------------------------------- entry point
def analyse_predictions(predictions: Predictions, per_epoch: Predictions | None = None,
                        images: np.ndarray | None = None, options: dict | None = None):
    """(results, captions, renderers, skipped, headline_metrics) for the best_model/ and training_progress/
    sections; every figure that does not apply is in `skipped` with its reason."""
    ctx = DiagnosticsContext(predictions, per_epoch, images, dict(options or {}))
    results, captions, renderers, skipped = compute_all(BEST_MODEL_FIGURES + PROGRESS_FIGURES, ctx)
    headline = headline_metrics(predictions, results, ctx.opt("threshold", "auto"))
    return results, captions, renderers, skipped, headline
