"""The headline numbers of one model's predictions, logged as MLflow metrics so runs sort and compare by
them: computed from the best_model/ results (ROC, PR, calibration, regression fit)."""

from __future__ import annotations

import re

import numpy as np

from mlviz.analysis.predictions import Predictions

BEST = "best_model"


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
        t, _ = head_threshold(head, threshold)
        pred = predicted_labels(head, t)
        m: dict[str, float] = {"accuracy": float((pred == head.y).mean())}
        if head.kind == "binary":
            tp = int(((pred == 1) & (head.y == 1)).sum())
            denom = int((pred == 1).sum() + (head.y == 1).sum())
            m["f1"] = 2 * tp / denom if denom else 0.0
            m["threshold"] = float(t)
        for res, key in ((roc, "auc"), (pr, "ap")):  # binary: the head's row; multi-class: the macro mean
            src = None if res is None else res.summary if head.kind == "binary" else res.macro
            sub = src[src["head"] == head.name] if src is not None and len(src) else []
            if len(sub):
                m[key] = float(sub[key].iloc[0])
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
