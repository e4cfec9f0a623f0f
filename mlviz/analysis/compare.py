"""Comparisons across runs and sweeps: the same analyses side by side, and which differences are real.

Runs: each run's `Predictions` go through the very analyses `mlviz best-model` uses
(`roc_analysis`, `pr_analysis`, `calibration_analysis`, and `headline_metrics` on their results), so a
number in the comparison equals the `mlviz.*` metric of that run. Runs are compared within groups of
the same task, heads and classes (multi-class runs together, binary runs together); a run that is alone
in its group is drawn alone and its difference to a reference is listed as skipped with the reason.

Differences against a reference run (per group: the best by AUC, the first, or a named run) use the
bootstrap resamples the analyses use (`resample_counts`): when both runs' predictions carry sample ids,
each id at most once, the labels agree, and at least half of each run's samples are shared, the rows
are matched by id and both runs are resampled with the same counts (a **paired** bootstrap); without
ids on either side, rows are matched by position when both have the same labels row by row; otherwise
each run is resampled on its own (**unpaired**). When both runs' rows are grouped (several rows per
patient, subject or video: `Predictions.group_column`), whole groups are resampled instead: both runs are
cut to the group values they share and draw the same groups (**paired by group**; the rows need not
match), or, with too few shared groups, each resamples its own groups (unpaired). A difference is
"larger than the noise" when its percentile interval excludes 0; a run compared with itself gets the
interval [0, 0]: no difference.

Sweeps: parameter importance (`stage1.parameter_importance` on each sweep's stage-1 runs), learning
curves of each sweep's best configuration (`stage2.learning_curves`, or the best run's own history for
a one-stage sweep), and stage-1 → stage-2 agreement (`stage2.stage_agreement`) of each sweep.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlviz.analysis import NotApplicable
from mlviz.analysis.calibration import calibration_analysis
from mlviz.analysis.diagnostics import (
    bootstrap_means,
    bootstrap_ranking,
    bootstrap_unit,
    head_threshold,
    interval,
    pr_analysis,
    predicted_labels,
    problems,
    roc_analysis,
)
from mlviz.analysis.predictions import HeadView, Predictions

# metric → higher is better; the order of the metrics table
DIRECTIONS = {"auc": True, "ap": True, "accuracy": True, "ece": False, "brier": False, "nll": False}
LABELS = {"auc": "AUC", "ap": "AP", "accuracy": "accuracy", "ece": "ECE", "brier": "Brier", "nll": "NLL"}
MACRO_GRID = np.linspace(0.0, 1.0, 1001)
PAIR_SHARE = 0.5  # pair when the shared samples are at least this share of each run's samples
BEST, ROC, PR, CAL = "best_model", "roc_curve", "precision_recall", "calibration"
# (predictions, {("best_model", "roc_curve" | "precision_recall" | "calibration"): result}) → {"mlviz.auc": ...}
Headline = Callable[[Predictions, dict], dict]


@dataclass
class RunInput:
    """One run's predictions as the comparison sees them."""

    run_id: str
    name: str
    predictions: Predictions
    experiment_id: str | None = None


@dataclass
class CurveSet:
    """Overlaid ROC or PR curves: one panel per (task group, head), one curve per run.

    `legend`: per panel and run the area (AUC or AP; macro mean over classes for a multi-class head)
    with its bootstrap interval and the counts; `bands`: pointwise ROC bands (binary heads only)."""

    kind: str  # "roc" | "pr"
    panels: list[dict]  # panel, group, head, title, task
    curves: pd.DataFrame  # panel, run, x, y
    bands: pd.DataFrame  # panel, run, x, low, high
    legend: pd.DataFrame  # panel, run, run_id, what, value, low, high, n, n_pos, baseline
    runs: list[str]
    n_boot: int
    level: float
    convention: str
    units: dict[str, str] = field(default_factory=dict)  # run → "samples" or "G groups of 'col'"


@dataclass
class CalibrationSet:
    """Overlaid reliability diagrams (equal-width bins, as `best_model/calibration` bins them)."""

    panels: list[dict]
    bins: pd.DataFrame  # panel, run, bin, lo, hi, count, confidence, observed
    legend: pd.DataFrame  # panel, run, run_id, target, ece, low, high, n
    runs: list[str]
    n_bins: int
    n_boot: int
    level: float
    convention: str
    units: dict[str, str] = field(default_factory=dict)  # run → "samples" or "G groups of 'col'"


@dataclass
class MetricsComparison:
    """Per run its headline numbers with intervals; per run and metric its difference to the reference."""

    runs: pd.DataFrame  # run, run_id, group, task, n, reference (bool), <metric>, <metric>_low, <metric>_high
    differences: pd.DataFrame  # run, run_id, group, reference, reference_run_id, metric, value, reference_value,
    # diff, low, high, significant, verdict, test, n_matched, n_run, n_reference, note
    table: pd.DataFrame  # long form of both, for the CSV and mlflow.log_table
    metrics: list[str]
    directions: dict[str, str]
    n_boot: int
    level: float
    seed: int
    convention: str
    units: dict[str, str] = field(default_factory=dict)  # run → "samples" or "G groups of 'col'"


@dataclass
class RunComparison:
    runs: list[dict]  # run, run_id, experiment_id, task, group, n
    groups: list[dict]  # group, task, heads, classes, runs, reference
    headline: dict[str, dict[str, float]]  # run label → the numbers `mlviz best-model` logs
    roc: CurveSet | None
    pr: CurveSet | None
    calibration: CalibrationSet | None
    metrics: MetricsComparison
    skipped: list[dict] = field(default_factory=list)  # {"run", "run_id", "figure", "reason"}


# --------------------------------------------------------------------------- runs: groups and labels
def unique_labels(inputs: list[RunInput]) -> list[str]:
    """Display names, made unique: the same run twice is `name`, `name (again)`; two runs with one name
    get their run id's start."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for r in inputs:
        base = r.name or r.run_id[:8]
        label = base
        if label in out:
            label = f"{base} (again)" if r.run_id in seen else f"{base} ({r.run_id[:8]})"
        k = 2
        while label in out:
            label = f"{base} (again {k})"
            k += 1
        seen[r.run_id] = seen.get(r.run_id, 0) + 1
        out.append(label)
    return out


def group_key(p: Predictions) -> tuple:
    classes = tuple(tuple(c) for c in p.head_classes) if p.head_classes else tuple(p.class_names)
    return p.task, tuple(p.head_names), classes


def group_name(p: Predictions) -> str:
    if p.task == "binary":
        return f"binary ({p.class_names[1] if len(p.class_names) > 1 else 'positive'} vs rest)"
    if p.task == "multiclass":
        return f"multi-class ({len(p.class_names)} classes)"
    if p.task == "multioutput":
        return f"multi-output ({len(p.head_names)} heads)"
    return p.task


# --------------------------------------------------------------------------- per-run analyses
@dataclass
class _RunAnalyses:
    roc: object | None
    pr: object | None
    cal: object | None
    headline: dict[str, float]
    why: dict[str, str]  # analysis → why it does not apply


def _analyse(preds: Predictions, n_boot: int, seed: int, level: float, n_bins: int, headline: Headline) -> _RunAnalyses:
    """ROC, PR and calibration exactly as best-model computes them, and its headline numbers."""
    out, why = {}, {}
    for key, fn in ((ROC, lambda: roc_analysis(preds, n_boot=n_boot, seed=seed, level=level)),
                    (PR, lambda: pr_analysis(preds, n_boot=n_boot, seed=seed, level=level)),
                    (CAL, lambda: calibration_analysis(preds, n_bins=n_bins, n_boot=n_boot, seed=seed, level=level))):
        try:
            out[key] = fn()
        except NotApplicable as exc:
            why[key] = str(exc)
    numbers = headline(preds, {(BEST, k): v for k, v in out.items()})
    return _RunAnalyses(out.get(ROC), out.get(PR), out.get(CAL), numbers, why)


def _head_value(headline: dict, head: str, metric: str) -> float | None:
    import re

    key = f"mlviz.{re.sub(r'[^A-Za-z0-9_.-]+', '_', head)}.{metric}" if head else f"mlviz.{metric}"
    v = headline.get(key)
    return None if v is None else float(v)


# --------------------------------------------------------------------------- bootstrap draws
def _calibration_draws(head: HeadView, n_bins: int, n_boot: int, seed: int,
                       groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """ECE, Brier and NLL of each resample, from calibration's own bootstrap (bins fixed per sample)."""
    from mlviz.analysis.calibration import (
        bootstrap_calibration,
        calibration_targets,
        equal_mass_bins,
        equal_width_bins,
    )

    main, classwise = calibration_targets(head)
    ew = equal_width_bins(main.conf, n_bins, main.float32)
    em, _ = equal_mass_bins(main.conf, n_bins)
    cw_idx = [equal_width_bins(t.conf, n_bins) for t in classwise]
    return bootstrap_calibration(main, classwise, ew, em, cw_idx, n_bins, head, n_boot, seed, groups=groups)


def metric_draws(preds: Predictions, n_boot: int, seed: int, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Each headline metric on each of `n_boot` resamples, resample b drawn as `resample_counts(n, n_boot,
    seed)` draws it: two runs with rows in the same order and the same seed see the same samples (grouped
    predictions: the same groups, when both hold the same group values). A multi-class head's AUC/AP is the
    mean over its classes; a multi-output model's, the mean over heads."""
    per_head: list[dict[str, np.ndarray]] = []
    groups = preds.groups
    for head in preds.heads():
        if head.kind == "regression":
            continue
        d: dict[str, np.ndarray] = {}
        boots = [bootstrap_ranking(p.y, p.s, n_boot, seed, grid=None, coherent=True, groups=groups)
                 for p in problems(head) if p.both]
        if boots:
            with warnings.catch_warnings():  # a class absent from a resample is NaN and left out of the mean
                warnings.simplefilter("ignore", RuntimeWarning)
                d["auc"] = np.nanmean(np.column_stack([b["auc"] for b in boots]), axis=1)
                d["ap"] = np.nanmean(np.column_stack([b["ap"] for b in boots]), axis=1)
        t, _ = head_threshold(head, "auto")
        d["accuracy"] = bootstrap_means((predicted_labels(head, t) == head.y).astype(float), n_boot, seed, groups)
        if preds.probabilities:
            cal = _calibration_draws(head, n_bins, n_boot, seed, groups)
            d.update({k: cal[k] for k in ("ece", "brier", "nll")})
        per_head.append(d)
    if not per_head:
        return {}
    keys = [k for k in DIRECTIONS if all(k in d for d in per_head)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: np.nanmean(np.column_stack([d[k] for d in per_head]), axis=1) for k in keys}


def _point(preds: Predictions, n_bins: int, headline: Headline) -> dict[str, float]:
    """The headline numbers of a subset of a run's predictions (no intervals)."""
    a = _analyse(preds, 0, 0, 0.95, n_bins, headline)
    return {m: a.headline[f"mlviz.{m}"] for m in DIRECTIONS if f"mlviz.{m}" in a.headline}


def match_samples(run: Predictions, ref: Predictions) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """(rows of run, rows of ref) of the shared sample ids in the same order, or (None, None) and why not."""
    if not (run.id_column or ref.id_column) and run.n == ref.n and \
            np.array_equal(np.asarray(run.y_true), np.asarray(ref.y_true)):
        rows = np.arange(run.n)
        return rows, rows, f"{run.n} samples matched by row order (no sample ids; the labels agree row by row)"
    if not (run.id_column and ref.id_column):
        missing = "neither run's" if not (run.id_column or ref.id_column) else "one run's"
        return None, None, f"{missing} predictions have no sample id column"
    a = pd.Series(run.sample_ids).astype(str)
    b = pd.Series(ref.sample_ids).astype(str)
    if a.duplicated().any() or b.duplicated().any():
        return None, None, "a sample id occurs more than once"
    pos_b = pd.Series(np.arange(len(b)), index=b.to_numpy())
    shared = a[a.isin(pos_b.index)]
    n = len(shared)
    if n < PAIR_SHARE * len(a) or n < PAIR_SHARE * len(b) or n < 2:
        return None, None, f"only {n} sample ids are shared ({len(a)} and {len(b)} samples)"
    rows_a = shared.index.to_numpy()
    rows_b = pos_b.loc[shared.to_numpy()].to_numpy()
    ya, yb = np.asarray(run.y_true)[rows_a], np.asarray(ref.y_true)[rows_b]
    if ya.shape != yb.shape or not np.array_equal(ya, yb):
        bad = int((ya != yb).reshape(len(ya), -1).any(axis=1).sum()) if ya.shape == yb.shape else n
        return None, None, f"the labels differ on {bad} of the {n} shared samples"
    return rows_a, rows_b, f"{n} samples matched by '{run.id_column}'"


def match_groups(run: Predictions, ref: Predictions) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """For two grouped runs: (rows of run, rows of ref) whose group value both runs hold, or (None, None)
    and why not. Cut to these rows, both runs number their groups alike (sorted values), so the same seed
    draws the same groups for both."""
    va, vb = run.metadata[run.group_column], ref.metadata[ref.group_column]
    a = va.astype(str).where(va.notna())  # a row without a group value is left out of the pairing
    b = vb.astype(str).where(vb.notna())
    ga, gb = set(a.dropna()), set(b.dropna())
    shared = ga & gb
    if len(shared) < PAIR_SHARE * len(ga) or len(shared) < PAIR_SHARE * len(gb) or len(shared) < 2:
        return None, None, (f"only {len(shared)} groups are shared ({len(ga)} of '{run.group_column}' and "
                            f"{len(gb)} of '{ref.group_column}')")
    rows_a = np.flatnonzero(a.isin(shared).to_numpy())
    rows_b = np.flatnonzero(b.isin(shared).to_numpy())
    return rows_a, rows_b, (f"{len(shared)} groups of '{run.group_column}' shared ({len(rows_a)} and {len(rows_b)} "
                            "rows): both runs resample the same groups")


def unit_label(preds: Predictions) -> str:
    u = bootstrap_unit(preds)
    return "samples" if u["bootstrap_unit"] == "samples" else f"{u['n_groups']} groups of '{u['group_column']}'"


def _verdict(diff_lo, diff_hi, higher_better: bool) -> tuple[bool, str]:
    if diff_lo is None or diff_hi is None:
        return False, "no interval"
    if diff_lo > 0 or diff_hi < 0:
        better = (diff_lo > 0) == higher_better
        return True, "better (larger than the noise)" if better else "worse (larger than the noise)"
    return False, "no difference"


def compare_pair(run: Predictions, ref: Predictions, *, headline: Headline, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, n_bins: int = 15, metrics: list[str] | None = None) -> list[dict]:
    """Difference run − reference of each metric with its bootstrap interval, paired when the samples
    can be matched (see the module docstring), one row per metric; grouped runs resample whole groups
    (paired by group when both are grouped and share their group values)."""
    grouped = (run.groups is not None, ref.groups is not None)
    if all(grouped):
        rows_a, rows_b, how = match_groups(run, ref)
        kind = "paired bootstrap by group"
    elif any(grouped):
        rows_a, rows_b, how = None, None, "only one run's predictions are grouped; each resamples its own units"
    else:
        rows_a, rows_b, how = match_samples(run, ref)
        kind = "paired bootstrap"
    paired = rows_a is not None
    if paired:
        a, b = run.subset(rows_a), ref.subset(rows_b)
        da, db = metric_draws(a, n_boot, seed, n_bins), metric_draws(b, n_boot, seed, n_bins)
        pa, pb = _point(a, n_bins, headline), _point(b, n_bins, headline)
        test = kind
    else:
        a, b = run, ref
        da, db = metric_draws(a, n_boot, seed, n_bins), metric_draws(b, n_boot, seed + 1, n_bins)
        pa, pb = _point(a, n_bins, headline), _point(b, n_bins, headline)
        test = "unpaired bootstrap" + (" (groups)" if any(grouped) else "")
    out = []
    for m in metrics or list(DIRECTIONS):
        if m not in pa or m not in pb:
            continue
        lo = hi = None
        if m in da and m in db and n_boot:
            lo, hi = interval(da[m] - db[m], level)
        significant, verdict = _verdict(lo, hi, DIRECTIONS[m])
        out.append({"metric": m, "value": pa[m], "reference_value": pb[m], "diff": pa[m] - pb[m], "low": lo,
                    "high": hi, "significant": significant, "verdict": verdict, "test": test,
                    "n_matched": len(rows_a) if paired else 0, "n_run": run.n, "n_reference": ref.n,
                    "note": how if paired else f"unpaired: {how}"})
    return out


# --------------------------------------------------------------------------- runs: curves
def _macro_roc(curves: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Mean TPR over classes at each FPR of a fixed grid (each class's curve interpolated)."""
    tprs = [np.interp(MACRO_GRID, g["fpr"].to_numpy(), g["tpr"].to_numpy()) for _, g in curves.groupby("class")]
    y = np.mean(tprs, axis=0)
    y[0] = 0.0
    return MACRO_GRID, y


def _macro_pr(curves: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision over classes at each recall of a fixed grid (each class's curve interpolated)."""
    precs = []
    for _, g in curves.groupby("class"):
        r, p = g["recall"].to_numpy()[::-1], g["precision"].to_numpy()[::-1]
        precs.append(np.interp(MACRO_GRID, r, p))
    return MACRO_GRID, np.mean(precs, axis=0)


def _panels(groups: list[dict], preds_of: dict[str, Predictions]) -> list[dict]:
    panels = []
    for g in groups:
        first = preds_of[g["runs"][0]]
        for head in first.heads():
            title = g["group"] + (f" — head {head.name}" if head.name else "")
            panels.append({"panel": len(panels), "group": g["group"], "head": head.name, "kind": head.kind,
                           "title": title, "task": first.task})
    return panels


def _curve_set(kind: str, panels, groups, analyses, labels_ids, n_boot, level) -> CurveSet | None:
    curves, bands, legend = [], [], []
    run_ids = dict(labels_ids)
    for panel in panels:
        group = next(g for g in groups if g["group"] == panel["group"])
        for run in group["runs"]:
            res = getattr(analyses[run], kind)
            if res is None:
                continue
            head = panel["head"]
            c = res.curves[res.curves["head"] == head]
            if c.empty:
                continue
            if kind == "roc":
                if panel["kind"] == "binary":
                    x, y = c["fpr"].to_numpy(), c["tpr"].to_numpy()
                    row = res.summary[res.summary["head"] == head].iloc[0]
                    b = res.band[(res.band["head"] == head)] if len(res.band) else res.band
                    if len(b):
                        bands.append(pd.DataFrame({"panel": panel["panel"], "run": run, "x": b["fpr"],
                                                   "low": b["tpr_low"], "high": b["tpr_high"]}))
                    what, value, lo, hi = "AUC", row["auc"], row["auc_low"], row["auc_high"]
                    n_pos, n = int(row["n_pos"]), int(row["n_pos"] + row["n_neg"])
                    base = None
                else:
                    x, y = _macro_roc(c)
                    row = res.macro[res.macro["head"] == head].iloc[0]
                    what, value, lo, hi = "macro AUC", row["auc"], row["auc_low"], row["auc_high"]
                    s = res.summary[res.summary["head"] == head].iloc[0]
                    n_pos, n, base = None, int(s["n_pos"] + s["n_neg"]), None
            else:
                if panel["kind"] == "binary":
                    x, y = c["recall"].to_numpy(), c["precision"].to_numpy()
                    row = res.summary[res.summary["head"] == head].iloc[0]
                    what, value, lo, hi = "AP", row["ap"], row["ap_low"], row["ap_high"]
                    n_pos, n, base = int(row["n_pos"]), int(row["n"]), float(row["prevalence"])
                else:
                    x, y = _macro_pr(c)
                    row = res.macro[res.macro["head"] == head].iloc[0]
                    what, value, lo, hi = "macro AP", row["ap"], row["ap_low"], row["ap_high"]
                    s = res.summary[res.summary["head"] == head].iloc[0]
                    n_pos, n, base = None, int(s["n"]), float(row["prevalence"])
            curves.append(pd.DataFrame({"panel": panel["panel"], "run": run, "x": x, "y": y}))
            legend.append({"panel": panel["panel"], "run": run, "run_id": run_ids[run], "what": what,
                           "value": float(value), "low": lo, "high": hi, "n": n, "n_pos": n_pos, "baseline": base})
    if not legend:
        return None
    convention = ("ROC: one-vs-rest; a multi-class head is drawn as the macro-average curve (TPR averaged over "
                  "classes at each FPR) and labelled with the mean one-vs-rest AUC; bands: pointwise bootstrap "
                  "(binary heads)" if kind == "roc" else
                  "PR: a multi-class head is drawn as the macro-average curve (precision averaged over classes at "
                  "each recall) and labelled with the mean one-vs-rest AP; dashed: the no-skill precision")
    used = list(dict.fromkeys(r for g in groups for r in g["runs"]))
    return CurveSet(kind, panels, pd.concat(curves, ignore_index=True),
                    pd.concat(bands, ignore_index=True) if bands else pd.DataFrame(columns=["panel", "run", "x", "low",
                                                                                            "high"]),
                    pd.DataFrame(legend), used, n_boot, level, convention)


def _calibration_set(panels, groups, analyses, labels_ids, n_bins, n_boot, level) -> CalibrationSet | None:
    bins, legend = [], []
    run_ids = dict(labels_ids)
    for panel in panels:
        group = next(g for g in groups if g["group"] == panel["group"])
        for run in group["runs"]:
            cal = analyses[run].cal
            if cal is None:
                continue
            head = panel["head"]
            target = cal.targets.get(head)
            b = cal.bins[(cal.bins["head"] == head) & (cal.bins["target"] == target)
                         & (cal.bins["strategy"] == "equal_width")]
            b = b[b["count"] > 0]
            bins.append(pd.DataFrame({"panel": panel["panel"], "run": run, "bin": b["bin"], "lo": b["lo"],
                                      "hi": b["hi"], "count": b["count"], "confidence": b["confidence"],
                                      "observed": b["observed"]}))
            m = cal.metrics[(cal.metrics["head"] == head) & (cal.metrics["metric"] == "ece")].iloc[0]
            legend.append({"panel": panel["panel"], "run": run, "run_id": run_ids[run], "target": target,
                           "ece": float(m["value"]), "low": m["low"], "high": m["high"], "n": int(b["count"].sum())})
    if not legend:
        return None
    used = list(dict.fromkeys(r for g in groups for r in g["runs"]))
    return CalibrationSet(panels, pd.concat(bins, ignore_index=True), pd.DataFrame(legend), used, n_bins, n_boot,
                          level, "equal-width bins [k/n, (k+1)/n) as torchmetrics (best_model/calibration); binary: "
                                 "the positive-class probability, multi-class: the top-label confidence")


# --------------------------------------------------------------------------- runs: entry point
def _pick_reference(runs: list[str], headline: dict, reference: str, ids: dict[str, str]) -> str:
    if reference == "first":
        return runs[0]
    if reference not in ("best", None):
        named = [r for r in runs if ids[r] == reference or r == reference]
        return named[0] if named else runs[0]
    key = "mlviz.auc" if all("mlviz.auc" in headline[r] for r in runs) else "mlviz.accuracy"
    return max(runs, key=lambda r: (headline[r].get(key, -np.inf), -runs.index(r)))


def compare_runs(inputs: list[RunInput], *, headline: Headline, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, n_bins: int = 15, reference: str = "best") -> RunComparison:
    """ROC, PR, calibration and a metrics table of several runs' predictions (see the module docstring).

    `headline`: how best-model turns the analyses into its logged numbers (`mlviz.figures.model.
    headline_metrics`, handed in because the registry sits above the analyses); `reference`: "best"
    (highest AUC, else accuracy, in each group), "first", or a run id / label."""
    labels = unique_labels(inputs)
    ids = {lab: r.run_id for lab, r in zip(labels, inputs, strict=True)}
    preds_of = {lab: r.predictions for lab, r in zip(labels, inputs, strict=True)}
    skipped, analyses = [], {}
    for lab, r in zip(labels, inputs, strict=True):
        if r.predictions.task == "regression":
            skipped.append({"run": lab, "run_id": r.run_id, "figure": "all",
                            "reason": "regression predictions: ROC, PR and calibration are for classifiers"})
            continue
        analyses[lab] = _analyse(r.predictions, n_boot, seed, level, n_bins, headline)
        for key, why in analyses[lab].why.items():
            skipped.append({"run": lab, "run_id": r.run_id, "figure": key, "reason": why})
    by_key: dict[tuple, list[str]] = {}
    for lab in analyses:
        by_key.setdefault(group_key(preds_of[lab]), []).append(lab)
    names: dict[str, int] = {}
    groups = []
    for members in sorted(by_key.values(), key=lambda m: -len(m)):
        name = group_name(preds_of[members[0]])
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:  # same task, other classes or heads
            name = f"{name} #{names[name]}"
        ref = _pick_reference(members, {m: analyses[m].headline for m in members}, reference, ids)
        groups.append({"group": name, "task": preds_of[members[0]].task, "heads": preds_of[members[0]].head_names,
                       "classes": preds_of[members[0]].class_names, "runs": members, "reference": ref})
    group_of = {m: g["group"] for g in groups for m in g["runs"]}
    panels = _panels(groups, preds_of)
    labels_ids = list(ids.items())
    roc = _curve_set("roc", panels, groups, analyses, labels_ids, n_boot, level)
    pr = _curve_set("pr", panels, groups, analyses, labels_ids, n_boot, level)
    cal = _calibration_set(panels, groups, analyses, labels_ids, n_bins, n_boot, level)
    units = {lab: unit_label(preds_of[lab]) for lab in analyses}
    for result in (roc, pr, cal):  # one colour per run, in the order the runs were given
        if result is not None:
            result.runs = [lab for lab in labels if lab in analyses]
            result.units = units

    run_rows, diff_rows = [], []
    for g in groups:
        for m in g["runs"]:
            a = analyses[m]
            row = {"run": m, "run_id": ids[m], "group": g["group"], "task": g["task"], "n": preds_of[m].n,
                   "reference": m == g["reference"] and len(g["runs"]) > 1}
            for metric in DIRECTIONS:
                row[metric] = a.headline.get(f"mlviz.{metric}")
                row[f"{metric}_low"], row[f"{metric}_high"] = _interval_of(a, metric, preds_of[m], n_boot, seed, level)
            run_rows.append(row)
            if m == g["reference"]:
                continue
            for d in compare_pair(preds_of[m], preds_of[g["reference"]], headline=headline, n_boot=n_boot, seed=seed,
                                  level=level, n_bins=n_bins):
                diff_rows.append({"run": m, "run_id": ids[m], "group": g["group"], "reference": g["reference"],
                                  "reference_run_id": ids[g["reference"]], **d})
        if len(g["runs"]) == 1:
            others = sorted({x["group"] for x in groups} - {g["group"]})
            m = g["runs"][0]
            skipped.append({"run": m, "run_id": ids[m], "figure": "differences",
                            "reason": f"no other {g['group']} run to compare with (the others are "
                                      f"{', '.join(others) or 'none'}: a different task, heads or classes); "
                                      "its curves are drawn alone"})
    runs_df = pd.DataFrame(run_rows)
    diffs = pd.DataFrame(diff_rows, columns=["run", "run_id", "group", "reference", "reference_run_id", "metric",
                                             "value", "reference_value", "diff", "low", "high", "significant",
                                             "verdict", "test", "n_matched", "n_run", "n_reference", "note"])
    metrics = MetricsComparison(runs_df, diffs, _long_table(runs_df, diffs), list(DIRECTIONS),
                                {k: "higher is better" if v else "lower is better" for k, v in DIRECTIONS.items()},
                                n_boot, level, seed,
                                f"values as `mlviz best-model` logs them (mlviz.auc, ...); intervals: {level:.0%} "
                                "percentile bootstrap (of whole groups for grouped predictions); differences: run − "
                                "reference, paired bootstrap on the samples matched by id (grouped runs: on the "
                                "shared groups) where possible, else unpaired; larger than the noise when the "
                                "difference's interval excludes 0", units)
    headline = {m: analyses[m].headline for m in analyses}
    runs_info = [{"run": lab, "run_id": r.run_id, "experiment_id": r.experiment_id, "task": r.predictions.task,
                  "group": group_of.get(lab), "n": r.predictions.n, **bootstrap_unit(r.predictions)}
                 for lab, r in zip(labels, inputs, strict=True)]
    return RunComparison(runs_info, groups, headline, roc, pr, cal, metrics, skipped)


def _interval_of(a: _RunAnalyses, metric: str, preds: Predictions, n_boot: int, seed: int,
                 level: float) -> tuple[float | None, float | None]:
    """The interval best-model reports beside a headline number (accuracy: a bootstrap of the same kind;
    multi-output runs, whose headline is the mean over heads: none)."""
    if preds.task == "multioutput":
        return None, None
    if metric == "auc" and a.roc is not None:
        src = a.roc.macro if len(a.roc.macro) else a.roc.summary
        return _lohi(src, "auc")
    if metric == "ap" and a.pr is not None:
        src = a.pr.macro if len(a.pr.macro) else a.pr.summary
        return _lohi(src, "ap")
    if metric == "accuracy" and n_boot:
        head = preds.heads()[0]
        t, _ = head_threshold(head, "auto")
        correct = (predicted_labels(head, t) == head.y).astype(float)
        return interval(bootstrap_means(correct, n_boot, seed, preds.groups), level)
    if metric in ("ece", "brier", "nll") and a.cal is not None:
        m = a.cal.metrics[a.cal.metrics["metric"] == metric]
        if len(m):
            return _none(m["low"].iloc[0]), _none(m["high"].iloc[0])
    return None, None


def _lohi(frame: pd.DataFrame, name: str):
    if not len(frame):
        return None, None
    return _none(frame[f"{name}_low"].iloc[0]), _none(frame[f"{name}_high"].iloc[0])


def _none(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)


def _long_table(runs: pd.DataFrame, diffs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and metric: value and interval, and the difference to the reference when made."""
    rows = []
    dl = {(d["run"], d["metric"]): d for d in diffs.to_dict(orient="records")}
    for r in runs.to_dict(orient="records"):
        for m in DIRECTIONS:
            if r.get(m) is None or (isinstance(r[m], float) and not np.isfinite(r[m])):
                continue
            d = dl.get((r["run"], m), {})
            rows.append({"run": r["run"], "run_id": r["run_id"], "group": r["group"], "metric": m,
                         "value": r[m], "low": r[f"{m}_low"], "high": r[f"{m}_high"], "n": r["n"],
                         "is_reference": bool(r["reference"]), "reference_run_id": d.get("reference_run_id"),
                         "diff": d.get("diff"), "diff_low": d.get("low"), "diff_high": d.get("high"),
                         "larger_than_noise": d.get("significant"), "verdict": d.get("verdict"),
                         "test": d.get("test"), "n_matched": d.get("n_matched")})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- runs: learning curves
@dataclass
class CurvesComparison:
    """Metric histories overlaid: one panel per key, one line (and band) per run or sweep."""

    keys: list[str]
    lines: list[str]
    curves: pd.DataFrame  # line, key, step, mean, low, high, n_runs
    what: str
    band: str | None = None


def run_learning_curves(histories: pd.DataFrame, labels_ids: list[tuple[str, str]],
                        max_keys: int = 6) -> CurvesComparison:
    """Each run's per-step history of the metrics logged at several steps (losses first)."""
    if histories is None or histories.empty:
        raise NotApplicable("the runs logged no metric histories")
    per = histories.groupby("key")["step"].nunique()
    keys = [k for k in per.index if per[k] > 1 and not k.startswith("mlviz.")]
    if not keys:
        raise NotApplicable("no metric was logged at more than one step")
    keys = sorted(keys, key=lambda k: ("loss" not in k.lower(), not k.startswith("val"), k))[:max_keys]
    frames = []
    for label, rid in labels_ids:
        h = histories[(histories["run_id"] == rid) & histories["key"].isin(keys)]
        if h.empty:
            continue
        agg = h.groupby(["key", "step"], as_index=False)["value"].last()
        frames.append(pd.DataFrame({"line": label, "key": agg["key"], "step": agg["step"].astype(int),
                                    "mean": agg["value"], "low": agg["value"], "high": agg["value"], "n_runs": 1}))
    if not frames:
        raise NotApplicable("none of the compared runs logged these metrics at several steps")
    curves = pd.concat(frames, ignore_index=True)
    return CurvesComparison(keys, list(dict.fromkeys(curves["line"])), curves, "each run's logged history")


# --------------------------------------------------------------------------- sweeps
@dataclass
class ImportanceComparison:
    sweeps: list[str]
    params: list[str]  # union, in the order of the first sweep's importance
    results: list  # ParameterImportance per sweep (None where it does not apply)
    skipped: list[dict]


@dataclass
class AgreementComparison:
    sweeps: list[str]
    results: list  # StageAgreement per sweep (None where it does not apply)
    skipped: list[dict]


@dataclass
class SweepComparison:
    sweeps: list[dict]  # sweep, objective, mode, n_runs, stage-1 and stage-2 runs, source
    importance: ImportanceComparison | None
    curves: CurvesComparison | None
    agreement: AgreementComparison | None
    skipped: list[dict]  # {"sweep", "figure", "reason"}


def compare_sweeps(sweeps: list[tuple[str, object]], histories: dict[str, pd.DataFrame] | None = None,
                   n_boot: int = 500, seed: int = 0) -> SweepComparison:
    """Importance, learning curves and stage agreement of several sweeps (`(label, Sweep)` pairs)."""
    from mlviz.analysis.stage1 import parameter_importance
    from mlviz.analysis.stage2 import stage_agreement

    skipped: list[dict] = []
    imps, agrees = [], []
    for label, sweep in sweeps:
        s1 = sweep.stage(1)
        try:
            if len(s1.runs) == 0:
                raise NotApplicable("no stage-1 runs")
            imps.append(parameter_importance(s1, n_boot=n_boot, seed=seed))
        except NotApplicable as exc:
            imps.append(None)
            skipped.append({"sweep": label, "figure": "importance", "reason": str(exc)})
        try:
            agrees.append(stage_agreement(sweep, n_boot=n_boot, seed=seed))
        except NotApplicable as exc:
            agrees.append(None)
            skipped.append({"sweep": label, "figure": "stage_agreement", "reason": str(exc)})
    labels = [label for label, _ in sweeps]
    order: list[str] = []
    for imp in imps:
        if imp is not None:
            order += [p for p in imp.params if p not in order]
    importance = ImportanceComparison(labels, order, imps, [s for s in skipped if s["figure"] == "importance"]) \
        if any(i is not None for i in imps) else None
    agreement = AgreementComparison(labels, agrees, [s for s in skipped if s["figure"] == "stage_agreement"]) \
        if any(a is not None for a in agrees) else None
    curves = None
    try:
        curves = sweep_learning_curves(sweeps, histories or {})
    except NotApplicable as exc:
        skipped.append({"sweep": "all", "figure": "learning_curves", "reason": str(exc)})
    info = []
    for label, sweep in sweeps:
        stages = sweep.runs["stage"].value_counts()
        info.append({"sweep": label, "objective": sweep.objective, "mode": sweep.mode, "n_runs": int(len(sweep.runs)),
                     "n_stage1": int(stages.get(1, 0)), "n_stage2": int(stages.get(2, 0)), "source": sweep.source})
    return SweepComparison(info, importance, curves, agreement, skipped)


def sweep_learning_curves(sweeps: list[tuple[str, object]], histories: dict[str, pd.DataFrame],
                          max_keys: int = 4) -> CurvesComparison:
    """Each sweep's best configuration: stage-2 mean over seeds with a min–max band
    (`stage2.learning_curves`), or, for a one-stage sweep, the best run's own history."""
    from mlviz.analysis.stage2 import learning_curves

    frames, why = [], []
    for label, sweep in sweeps:
        hist = histories.get(label)
        if hist is None or hist.empty:
            why.append(f"{label}: no histories")
            continue
        try:
            lc = learning_curves(sweep, hist, top=1)
            for c in lc.curves:
                frames.append(pd.DataFrame({"line": label, "key": c.key, "step": c.steps, "mean": c.mean,
                                            "low": c.low, "high": c.high, "n_runs": c.n_seeds}))
        except NotApplicable:
            best = str(sweep.best(1)["run_id"].iloc[0])
            h = hist[hist["run_id"] == best]
            per = h.groupby("key")["step"].nunique()
            keys = [k for k in per.index if per[k] > 1]
            if not keys:
                why.append(f"{label}: no metric of its best run was logged at several steps")
                continue
            agg = h[h["key"].isin(keys)].groupby(["key", "step"], as_index=False)["value"].last()
            frames.append(pd.DataFrame({"line": label, "key": agg["key"], "step": agg["step"].astype(int),
                                        "mean": agg["value"], "low": agg["value"], "high": agg["value"],
                                        "n_runs": 1}))
    if not frames:
        raise NotApplicable("no sweep has learning curves (" + "; ".join(why) + ")")
    curves = pd.concat(frames, ignore_index=True)
    counts = curves.groupby("key")["line"].nunique()
    objectives = {s.objective for _, s in sweeps}
    keys = sorted(counts.index, key=lambda k: (-counts[k], k not in objectives, "loss" not in k.lower(), k))[:max_keys]
    curves = curves[curves["key"].isin(keys)].reset_index(drop=True)
    return CurvesComparison(keys, list(dict.fromkeys(curves["line"])), curves,
                            "each sweep's best configuration (stage 2: mean over its seeds; one-stage: the best run)",
                            "min–max over seeds")
