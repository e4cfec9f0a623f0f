"""The whole best_model/ section for 100,000 binary predictions with 1,000 bootstrap resamples, against
scikit-learn's displays drawing the same figures.

mlviz: `analyse_predictions` (every best_model figure: ROC with AUC interval and band, PR with AP interval,
metrics vs threshold, score distributions, confusion matrices, calibration with six metrics and their
intervals, slice metrics over a 3-valued grouping column, hardest samples, case gallery), each figure's
analysis and rendering (PNG written) timed on its own.

scikit-learn baseline: RocCurveDisplay, PrecisionRecallDisplay, CalibrationDisplay (15 bins) and
ConfusionMatrixDisplay from the predictions, each saved as PNG; the bootstrap intervals they lack as
`roc_auc_score`, `average_precision_score` and `brier_score_loss` in a loop over the same number of
resamples. Those loops are timed on a sample of resamples (--sample, default 50) and extrapolated
linearly to --n-boot; the table says so. torchmetrics' `binary_calibration_error` in a loop stands in for
the ECE interval when torchmetrics is installed. The figures mlviz draws that scikit-learn has no display
for are listed without a baseline.

Correctness is checked on the way: mlviz's AUC/AP of the first resamples equal scikit-learn's
roc_auc_score / average_precision_score with the resample counts as sample weights.

    python bench/bench_diagnostics.py [--n 100000] [--n-boot 1000] [--sample 50] [--no-write]

Replaces its section of bench/RESULTS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WORK, fmt_s, header_lines, table, update_results  # noqa: E402


def make_predictions(n: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    site = rng.choice(["scanner_a", "scanner_b", "scanner_c"], n, p=[0.5, 0.3, 0.2])
    y = (rng.random(n) < np.where(site == "scanner_c", 0.4, 0.25)).astype(int)
    z = 1.6 * (2 * y - 1) + rng.normal(0, 1.3, n) + np.where(site == "scanner_b", 0.4, 0.0)
    score = 1 / (1 + np.exp(-1.3 * z))  # a little over-confident, so calibration has something to show
    return pd.DataFrame({"sample_id": np.arange(n), "label": y, "score": score, "site": site})


def time_it(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_mlviz(df, n_boot: int, out_dir: Path):
    import matplotlib.pyplot as plt

    from mlviz.analysis import NotApplicable
    from mlviz.analysis.predictions import predictions_from_frame
    from mlviz.figures.model import BEST_MODEL_FIGURES, DiagnosticsContext, ModelOptions, analyse_predictions

    read_s, preds = time_it(lambda: predictions_from_frame(df))
    ctx = DiagnosticsContext(preds, options=ModelOptions(n_boot=n_boot, seed=0))
    rows = {}
    for spec in BEST_MODEL_FIGURES:
        try:
            compute_s, result = time_it(lambda s=spec: s.compute(ctx))
        except NotApplicable:
            continue

        def render(s=spec, r=result):
            fig = s.render(r)
            fig.savefig(out_dir / f"{s.key}.png")
            plt.close(fig)

        render_s, _ = time_it(render)
        rows[spec.key] = (compute_s, render_s)
    # the public entry point end to end (analyses only; the per-figure loop above rendered them)
    from mlviz.analysis import diagnostics as d

    d._RANKING_CACHE.clear()
    total_s, (results, *_rest) = time_it(lambda: analyse_predictions(preds, options={"n_boot": n_boot, "seed": 0}))
    return read_s, rows, total_s, results


def bench_sklearn(df, n_boot: int, sample: int, out_dir: Path):
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import (
        ConfusionMatrixDisplay,
        PrecisionRecallDisplay,
        RocCurveDisplay,
        average_precision_score,
        brier_score_loss,
        roc_auc_score,
    )

    y, s = df["label"].to_numpy(), df["score"].to_numpy()
    n = len(y)

    def display(make, name):
        def go():
            disp = make()
            disp.figure_.savefig(out_dir / f"sklearn_{name}.png")
            plt.close(disp.figure_)
        return time_it(go)[0]

    disp = {
        "roc_curve": display(lambda: RocCurveDisplay.from_predictions(y, s), "roc"),
        "precision_recall": display(lambda: PrecisionRecallDisplay.from_predictions(y, s, plot_chance_level=True),
                                    "pr"),
        "calibration": display(lambda: CalibrationDisplay.from_predictions(y, s, n_bins=15), "calibration"),
        "confusion_matrix": display(lambda: ConfusionMatrixDisplay.from_predictions(y, (s >= 0.5).astype(int)),
                                    "confusion"),
    }
    rng = np.random.default_rng(0)
    idx = rng.integers(0, n, size=(sample, n))

    def loop(metric):
        t = time.perf_counter()
        for b in range(sample):
            metric(y[idx[b]], s[idx[b]])
        return (time.perf_counter() - t) * n_boot / sample

    boot = {"auc": loop(roc_auc_score), "ap": loop(average_precision_score), "brier": loop(brier_score_loss)}
    try:
        import torch
        from torchmetrics.functional.classification import binary_calibration_error

        tp, ty = torch.from_numpy(s.copy()), torch.from_numpy(y.copy())
        ti = torch.from_numpy(idx)
        t = time.perf_counter()
        for b in range(sample):
            binary_calibration_error(tp[ti[b]], ty[ti[b]], n_bins=15)
        boot["ece"] = (time.perf_counter() - t) * n_boot / sample
    except ImportError:
        pass
    return disp, boot


def warm_up(out_dir: Path) -> None:
    """Imports and matplotlib's first figure, on a small table, so they are not charged to either side."""
    small = make_predictions(500, seed=1)
    bench_mlviz(small, 20, out_dir)
    bench_sklearn(small, 20, 2, out_dir)


def check_against_sklearn(df, checks: int = 5) -> float:
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    from mlviz.analysis.diagnostics import RankedScores, resample_counts

    y, s = df["label"].to_numpy(), df["score"].to_numpy()
    ranked = RankedScores(y, s)
    w = next(resample_counts(len(y), checks, seed=0))
    st = ranked.stats(w[:, ranked.layout])
    diffs = []
    for b in range(checks):
        diffs.append(abs(st["auc"][b] - roc_auc_score(y, s, sample_weight=w[b])))
        diffs.append(abs(st["ap"][b] - average_precision_score(y, s, sample_weight=w[b])))
    return float(np.max(diffs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=50, help="resamples timed for the scikit-learn loops")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")

    out_dir = WORK / "diagnostics"
    out_dir.mkdir(parents=True, exist_ok=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    warm_up(out_dir)
    df = make_predictions(args.n)
    print(f"{args.n} binary predictions, {args.n_boot} resamples; load {load}", flush=True)
    read_s, rows, total_s, results = bench_mlviz(df, args.n_boot, out_dir)
    print(f"mlviz done: analyses {total_s:.1f} s", flush=True)
    disp, boot = bench_sklearn(df, args.n_boot, args.sample, out_dir)
    err = check_against_sklearn(df)

    ex = f"extrapolated from {args.sample} resamples"
    baseline = {
        "roc_curve": (disp["roc_curve"] + boot["auc"],
                      f"RocCurveDisplay + roc_auc_score × {args.n_boot} ({ex}); no band, no operating points"),
        "precision_recall": (disp["precision_recall"] + boot["ap"],
                             f"PrecisionRecallDisplay + average_precision_score × {args.n_boot} ({ex})"),
        "calibration": (disp["calibration"] + boot["brier"] + boot.get("ece", 0.0),
                        f"CalibrationDisplay (15 bins) + brier_score_loss × {args.n_boot}"
                        + (f" + torchmetrics binary_calibration_error × {args.n_boot}" if "ece" in boot else "")
                        + f" ({ex}); no equal-mass ECE, MCE, classwise ECE or NLL intervals"),
        "confusion_matrix": (disp["confusion_matrix"], "ConfusionMatrixDisplay at 0.5 (one matrix, no max-F1 one)"),
    }
    body_rows, m_total, s_total = [], 0.0, 0.0
    for key, (c, r) in rows.items():
        m = c + r
        m_total += m
        if key in baseline:
            b, what = baseline[key]
            s_total += b
            body_rows.append([f"`{key}`", fmt_s(c), fmt_s(r), fmt_s(m), fmt_s(b), f"{b / m:.1f}×", what])
        else:
            body_rows.append([f"`{key}`", fmt_s(c), fmt_s(r), fmt_s(m), "—", "—", "no scikit-learn display"])
    compared = [k for k in rows if k in baseline]
    m_cmp = sum(sum(rows[k]) for k in compared)
    body_rows.append(["**the four figures scikit-learn also draws**", "", "", f"**{fmt_s(m_cmp)}**",
                      f"**{fmt_s(s_total)}**", f"**{s_total / m_cmp:.1f}×**", ", ".join(compared)])
    body_rows.append(["**whole best_model section**", "", "", f"**{fmt_s(m_total)}**", "—", "—",
                      f"{len(rows)} figures; reading and validating the table: {fmt_s(read_s)}"])
    header = ["figure", "mlviz analysis", "mlviz render", "mlviz total", "scikit-learn", "speed-up", "baseline"]
    md = table(header, body_rows)
    loops = table(["bootstrap of", f"mlviz ({args.n_boot} resamples)", f"scikit-learn loop ({ex})", "speed-up"], [
        ["AUC + AP + ROC band (one pass)", fmt_s(rows["roc_curve"][0]), fmt_s(boot["auc"] + boot["ap"]),
         f"{(boot['auc'] + boot['ap']) / rows['roc_curve'][0]:.0f}×"],
        ["ECE (2 binnings), MCE, classwise ECE, Brier, NLL", fmt_s(rows["calibration"][0]),
         fmt_s(boot["brier"] + boot.get("ece", 0.0)) + (" (Brier + ECE only)" if "ece" in boot else " (Brier only)"),
         f"{(boot['brier'] + boot.get('ece', 0.0)) / rows['calibration'][0]:.0f}×"],
    ])
    roc = results[("best_model", "roc_curve")].summary.iloc[0]
    cal = results[("best_model", "calibration")].metrics.set_index("metric")
    notes = (f"- end to end, `analyse_predictions` (all analyses, no rendering): {fmt_s(total_s)}\n"
             f"- AUC {roc['auc']:.4f} [{roc['auc_low']:.4f}, {roc['auc_high']:.4f}], ECE {cal.loc['ece', 'value']:.4f} "
             f"[{cal.loc['ece', 'low']:.4f}, {cal.loc['ece', 'high']:.4f}]\n"
             f"- mlviz's resampled AUC/AP equal scikit-learn's with the resample counts as sample weights "
             f"(largest difference over 5 resamples: {err:.1e})\n"
             "- the scikit-learn column is what it takes to get the same numbers with scikit-learn: its displays "
             "draw the curves without intervals, so the bootstrap is a loop of its metric functions")
    body = (header_lines(f"{args.n:,} binary predictions (30% positive, a 3-valued grouping column), "
                         f"{args.n_boot} bootstrap resamples, 15 calibration bins, no images. Load average at "
                         f"start: {load} (2 cores, shared).") + "\n\n" + md + "\n\n" + loops + "\n\n" + notes + "\n")
    print("\n" + md + "\n\n" + loops + "\n\n" + notes)
    if not args.no_write:
        update_results("bench_diagnostics", f"best_model diagnostics: {args.n:,} predictions, {args.n_boot:,} "
                       "resamples (`bench/bench_diagnostics.py`)", body)
        print("\nwrote bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
