"""The best_model/ and training_progress/ figures: registry entries and `analyse_predictions`.

    results, captions, renderers, skipped, headline = analyse_predictions(preds, per_epoch, images, options)

- `results`: {(section, file stem): result dataclass} for every figure that applies;
- `captions`: {(section, stem): caption}; `renderers`: {(section, stem): FigureSpec} (`spec.render(result)`);
- `skipped`: [{"section", "figure", "reason"}] for the figures that do not apply;
- `headline`: {"mlviz.auc": ..., "mlviz.<head>.auc": ...} numbers to log as MLflow metrics.

Options: `ModelOptions` (or a dict of its fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlviz.analysis import NotApplicable
from mlviz.analysis.headline import headline_metrics
from mlviz.analysis.predictions import Predictions
from mlviz.figures import FigureSpec, analysis, compute_all, extra_specs

BEST = "best_model"
PROGRESS = "training_progress"
RD = "mlviz.render.diagnostics"
RP = "mlviz.render.progress"


@dataclass
class ModelOptions:
    """The options every best_model/ and training_progress/ figure may read, typed in one place.

    threshold: "auto" (0.5 for probabilities, else max-F1), "max_f1", "youden" or a number;
    progress_n_boot: resamples per epoch (default min(n_boot, 200)); group_columns: default detected;
    group_id: the column whose groups (patients, subjects, videos) the bootstrap resamples whole, "none" for
    rows, None to detect it (applied when the predictions are read: `Predictions.group_column`)."""

    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    n_bins: int = 15
    threshold: str | float = "auto"
    progress_threshold: str | float = "max_f1"
    progress_n_boot: int | None = None
    group_columns: list[str] | None = None
    group_id: str | None = None
    hardest_k: int = 12
    gallery_per_case: int | None = None  # default 6, 4 for multi-output models
    checkpoints: int = 6
    trajectories_per_class: int = 15

    @classmethod
    def of(cls, options: dict | ModelOptions | None) -> ModelOptions:
        if isinstance(options, cls):
            return options
        known = {k: v for k, v in (options or {}).items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)


@dataclass
class DiagnosticsContext:
    """What a diagnostics figure may use: the final predictions, per-epoch predictions, images, options."""

    predictions: Predictions
    per_epoch: Predictions | None = None
    images: np.ndarray | None = None
    options: ModelOptions = field(default_factory=ModelOptions)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def boot(self) -> dict:
        o = self.options
        return {"n_boot": int(o.n_boot), "seed": int(o.seed), "level": float(o.level)}


# --------------------------------------------------------------------------- computes
def _slices(ctx):
    if ctx.predictions.task == "regression":
        raise NotApplicable("regression predictions: see regression_error_by_slice")
    return analysis("diagnostics:slice_metrics", ctx.predictions, ctx.options.group_columns,
                    threshold=ctx.options.threshold, **ctx.boot)


def _gallery(ctx):
    per = int(ctx.options.gallery_per_case or (6 if ctx.predictions.task != "multioutput" else 4))
    return analysis("diagnostics:case_gallery", ctx.predictions, per, ctx.options.threshold, ctx.images)


def _progress(ctx, name: str, *args, **kw):
    """The training_progress/ analysis `name` on the per-epoch predictions, at the progress threshold."""
    return analysis(f"progress:{name}", ctx.per_epoch, *args, threshold=ctx.options.progress_threshold, **kw)


def _metrics_evolution(ctx):
    b = ctx.boot
    return _progress(ctx, "metrics_evolution", n_boot=int(ctx.options.progress_n_boot or min(b["n_boot"], 200)),
                     seed=b["seed"], level=b["level"], n_bins=int(ctx.options.n_bins))


BEST_MODEL_FIGURES: list[FigureSpec] = [
    FigureSpec(BEST, "roc_curve",
               "ROC curve with AUC, its 95% bootstrap interval and a pointwise bootstrap band (whole groups "
               "resampled when rows share a patient/subject id: see the JSON's bootstrap_unit); ● Youden J and "
               "■ max-F1 operating points. Multi-class: one-vs-rest per class and the macro AUC; one panel per head.",
               "two classes among the labels",
               lambda c: analysis("diagnostics:roc_analysis", c.predictions, **c.boot),
               f"{RD}:plot_roc_curve", grid_key="mlviz_roc_curve"),
    FigureSpec(BEST, "precision_recall",
               "Precision-recall curve with average precision (95% bootstrap interval) and the no-skill baseline "
               "(the positive rate); the max-F1 point marked.",
               "two classes among the labels",
               lambda c: analysis("diagnostics:pr_analysis", c.predictions, **c.boot),
               f"{RD}:plot_precision_recall", grid_key="mlviz_precision_recall"),
    FigureSpec(BEST, "metrics_vs_threshold",
               "Precision, recall, F1, accuracy and specificity against the threshold (positive when score >= "
               "threshold), with a threshold table (TP/FP/TN/FN, specificity, support).",
               "two classes among the labels",
               lambda c: analysis("diagnostics:threshold_analysis", c.predictions, c.options.threshold),
               f"{RD}:plot_metrics_vs_threshold"),
    FigureSpec(BEST, "score_distributions",
               "Class-conditional distributions of the score (multi-class: each class's probability, true class "
               "vs the rest), the threshold and the KS separation.",
               "classification predictions",
               lambda c: analysis("diagnostics:score_distributions", c.predictions,
                                  threshold=c.options.threshold),
               f"{RD}:plot_score_distributions"),
    FigureSpec(BEST, "confusion_matrix",
               "Counts and row percentages at the chosen threshold (0.5 for probabilities, else max-F1; the "
               "max-F1 matrix beside it when different); multi-class: arg-max.",
               "classification predictions",
               lambda c: analysis("diagnostics:confusion_analysis", c.predictions, c.options.threshold),
               f"{RD}:plot_confusion_matrix", grid_key="mlviz_confusion_matrix"),
    FigureSpec(BEST, "calibration",
               "Reliability diagram with the count per bin; ECE (equal-width and equal-mass bins), MCE, "
               "classwise ECE, Brier score and NLL with 95% bootstrap intervals.",
               "probabilities",
               lambda c: analysis("calibration:calibration_analysis", c.predictions, n_bins=int(c.options.n_bins),
                                  **c.boot),
               f"{RD}:plot_calibration", grid_key="mlviz_calibration"),
    FigureSpec(BEST, "slice_metrics",
               "Metrics per value of each grouping column with 95% bootstrap intervals, worst slice first.",
               "a grouping column", _slices, f"{RD}:plot_slice_metrics"),
    FigureSpec(BEST, "hardest_samples",
               "The most confidently wrong samples: false negatives with the lowest scores, false positives "
               "with the highest (multi-class: lowest true-class probability), with images when available.",
               "a misclassified sample",
               lambda c: analysis("diagnostics:hardest_samples", c.predictions, int(c.options.hardest_k),
                                  c.options.threshold, c.images),
               f"{RD}:plot_hardest_samples"),
    FigureSpec(BEST, "case_gallery",
               "TP / TN / FP / FN examples (multi-class: correct / wrong) spread over each case's score range.",
               "classification predictions", _gallery, f"{RD}:plot_case_gallery", grid_key="mlviz_case_gallery"),
    FigureSpec(BEST, "regression_predicted_vs_true",
               "Predicted against true values with y = x; MAE, RMSE, R² and bias with 95% bootstrap intervals.",
               "regression predictions",
               lambda c: analysis("diagnostics:regression_fit", c.predictions, **c.boot),
               f"{RD}:plot_regression_predicted_vs_true", grid_key="mlviz_regression_predicted_vs_true"),
    FigureSpec(BEST, "regression_residuals",
               "Residuals (predicted − true) against the prediction with binned mean ± sd, and their histogram.",
               "regression predictions",
               lambda c: analysis("diagnostics:regression_residuals", c.predictions),
               f"{RD}:plot_regression_residuals"),
    FigureSpec(BEST, "regression_error_by_slice",
               "MAE, RMSE and bias per value of each grouping column with 95% intervals, worst slice first.",
               "regression predictions with a grouping column",
               lambda c: analysis("diagnostics:regression_error_by_slice", c.predictions, c.options.group_columns,
                                  **c.boot),
               f"{RD}:plot_slice_metrics"),
]

PROGRESS_FIGURES: list[FigureSpec] = [
    FigureSpec(PROGRESS, "metrics_evolution",
               "AUC (95% bootstrap interval), AP, accuracy, F1, precision, recall and calibration per epoch, "
               "each epoch at its own threshold (multi-class: the arg-max class); the best epoch marked.",
               "per-epoch predictions", _metrics_evolution, f"{RP}:plot_metrics_evolution"),
    FigureSpec(PROGRESS, "score_evolution",
               "Class-conditional score distributions at checkpoint epochs, with each epoch's threshold (binary; multi-class: the arg-max class).",
               "per-epoch predictions from two epochs",
               lambda c: _progress(c, "score_evolution", int(c.options.checkpoints)),
               f"{RP}:plot_score_evolution"),
    FigureSpec(PROGRESS, "sample_trajectories",
               "Scores of individual samples across epochs (spread over the final score range), each class's "
               "median and IQR, and the per-epoch threshold.",
               "per-epoch predictions from two epochs",
               lambda c: _progress(c, "sample_trajectories", int(c.options.trajectories_per_class)),
               f"{RP}:plot_sample_trajectories"),
    FigureSpec(PROGRESS, "late_bloomers",
               "Samples whose classification flipped, judged at each epoch's own threshold (multi-class: the arg-max class): how many, when "
               "they were learned, and the latest bloomers.",
               "per-epoch predictions from two epochs",
               lambda c: _progress(c, "late_bloomers", images=c.images),
               f"{RP}:plot_late_bloomers"),
    FigureSpec(PROGRESS, "decision_boundary_evolution",
               "The threshold and the separation of the classes' scores (medians, IQR, d') per epoch.",
               "per-epoch predictions from two epochs", lambda c: _progress(c, "decision_boundary_evolution"),
               f"{RP}:plot_decision_boundary_evolution"),
]


# --------------------------------------------------------------------------- entry point
def analyse_predictions(predictions: Predictions, per_epoch: Predictions | None = None,
                        images: np.ndarray | None = None, options: dict | None = None):
    """(results, captions, renderers, skipped, headline_metrics) for the best_model/ and training_progress/
    sections; every figure that does not apply is in `skipped` with its reason."""
    ctx = DiagnosticsContext(predictions, per_epoch, images, ModelOptions.of(options))
    specs = BEST_MODEL_FIGURES + PROGRESS_FIGURES + extra_specs((BEST, PROGRESS))
    results, captions, renderers, skipped = compute_all(specs, ctx)
    headline = headline_metrics(predictions, results, ctx.options.threshold)
    return results, captions, renderers, skipped, headline
