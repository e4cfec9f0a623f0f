"""compare/ figures: several runs' ROC, PR and calibration overlaid, the metrics table with differences,
and several sweeps' importance, learning curves and stage agreement side by side. One colour per run
(or sweep), the same in every figure of a comparison."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

from mlviz.analysis.compare import (
    LABELS,
    AgreementComparison,
    CalibrationSet,
    CurvesComparison,
    CurveSet,
    ImportanceComparison,
    MetricsComparison,
)
from mlviz.render import style
from mlviz.render.style import plt

BETTER, WORSE, SAME, REF = "#d9f0d3", "#f8d0d0", "#ffffff", "#e8eef8"


def colour(runs: list[str], run: str):
    i = runs.index(run) if run in runs else len(runs)
    return style.PALETTE[i % len(style.PALETTE)] if i < len(style.PALETTE) else plt.get_cmap("tab20")(i % 20)


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _panel_grid(n: int, w: float, h: float):
    cols = 1 if n == 1 else 2
    rows = -(-n // cols)
    fig, axes = style.subplots(rows, cols, w * cols, h * rows)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _note(fig, text: str | None, width_chars: int | None = None):
    if text:
        width = width_chars or max(int(fig.get_figwidth() * 14), 60)
        fig.supxlabel("\n".join(textwrap.wrap(text, width)), fontsize=7, color=style.MUTED)


# --------------------------------------------------------------------------- ROC and PR
def _legend_label(row: dict, kind: str) -> str:
    n = f"n={row['n']}" + (f", {int(row['n_pos'])} pos." if row.get("n_pos") is not None
                            and np.isfinite(row["n_pos"]) else "")
    return f"{_short(row['run'])}: {row['what']} {style.with_interval(row['value'], row['low'], row['high'])} ({n})"


def plot_curves(r: CurveSet):
    """Overlaid ROC or PR curves, one panel per task group (and head)."""
    panels = [p for p in r.panels if (r.legend["panel"] == p["panel"]).any()]
    fig, axes = _panel_grid(len(panels), 6.2, 6.0)
    for ax, panel in zip(axes, panels, strict=True):
        leg = r.legend[r.legend["panel"] == panel["panel"]].to_dict(orient="records")
        for row in leg:
            c = colour(r.runs, row["run"])
            cur = r.curves[(r.curves["panel"] == panel["panel"]) & (r.curves["run"] == row["run"])]
            step = "steps-post" if (r.kind == "roc" and panel["kind"] == "binary") else "default"
            if r.kind == "pr" and panel["kind"] == "binary":
                step = "steps-post"  # as scikit-learn draws it (recall decreasing)
            ax.plot(cur["x"], cur["y"], color=c, lw=1.5, drawstyle=step, label=_legend_label(row, r.kind))
            band = r.bands[(r.bands["panel"] == panel["panel"]) & (r.bands["run"] == row["run"])] \
                if len(r.bands) else r.bands
            if len(band):
                ax.fill_between(band["x"], band["low"], band["high"], step="post", color=c, alpha=0.12, lw=0)
        if r.kind == "roc":
            _corner_zoom(ax, r, panel, leg)
            ax.plot([0, 1], [0, 1], ls="--", color=style.MUTED, lw=0.8, label="chance")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate" + (" (macro mean over classes)" if panel["kind"] != "binary" else ""))
        else:
            bases = sorted({round(float(b), 4) for b in (row["baseline"] for row in leg) if b is not None})
            for b in bases:
                ax.axhline(b, ls="--", color=style.MUTED, lw=0.8,
                           label=f"no skill (positive rate {b:.3g})" if len(bases) == 1 else None)
            _recall_zoom(ax, r, panel, leg)
            ax.set_xlabel("recall")
            ax.set_ylabel("precision" + (" (macro mean over classes)" if panel["kind"] != "binary" else ""))
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.legend(loc="lower right" if r.kind == "roc" else "lower left", fontsize=7)
        ax.set_title(panel["title"])
    what = "ROC curves" if r.kind == "roc" else "Precision-recall curves"
    area = "AUC" if r.kind == "roc" else "AP"
    style.suptitle(fig, f"{what} of {len(r.legend['run'].unique())} runs ({area} with {r.level:.0%} interval from "
                        f"{r.n_boot} bootstrap resamples){_grouped(r)}")
    _note(fig, r.convention)
    return fig


ZOOM_FPR = 0.1


def _corner_zoom(ax, r: CurveSet, panel: dict, leg: list[dict]) -> None:
    """When every curve hugs the top-left corner (TPR > 0.8 at FPR 0.1), a zoom on FPR ≤ 0.1 shows where
    the runs differ."""
    curves = [r.curves[(r.curves["panel"] == panel["panel"]) & (r.curves["run"] == row["run"])] for row in leg]
    at = [float(np.interp(ZOOM_FPR, c["x"], c["y"])) for c in curves if len(c)]
    early = [float(np.interp(0.01, c["x"], c["y"])) for c in curves if len(c)]
    if not at or min(at) < 0.8:
        return
    ins = ax.inset_axes([0.36, 0.3, 0.6, 0.42])
    step = "steps-post" if panel["kind"] == "binary" else "default"
    for row, c in zip(leg, curves, strict=True):
        ins.plot(c["x"], c["y"], color=colour(r.runs, row["run"]), lw=1.3, drawstyle=step)
    lo = max(0.0, min(early) - 0.02)
    ins.set_xlim(0, ZOOM_FPR)
    ins.set_ylim(lo, 1.005)
    ins.tick_params(labelsize=7)
    ins.set_title(f"zoom: FPR ≤ {ZOOM_FPR:g}", fontsize=7)
    ax.indicate_inset_zoom(ins, edgecolor=style.MUTED)


ZOOM_RECALL = 0.8


def _recall_zoom(ax, r: CurveSet, panel: dict, leg: list[dict]) -> None:
    """When every curve keeps precision above 0.8 up to recall 0.9, a zoom on recall ≥ 0.8 shows where
    the runs part."""
    curves = [r.curves[(r.curves["panel"] == panel["panel"]) & (r.curves["run"] == row["run"])] for row in leg]
    tails = [c[(c["x"] >= ZOOM_RECALL) & (c["x"] <= 0.99)]["y"] for c in curves if len(c)]
    mid = [c[(c["x"] >= 0.9) & (c["x"] <= 0.99)]["y"] for c in curves if len(c)]
    at = [float(m.min()) if len(m) else 0.0 for m in mid]
    if not at or min(at) < 0.8 or not all(len(t) for t in tails):
        return
    ins = ax.inset_axes([0.1, 0.28, 0.6, 0.42])
    step = "steps-post" if panel["kind"] == "binary" else "default"
    for row, c in zip(leg, curves, strict=True):
        ins.plot(c["x"], c["y"], color=colour(r.runs, row["run"]), lw=1.3, drawstyle=step)
    ins.set_xlim(ZOOM_RECALL, 1.0)
    ins.set_ylim(max(0.0, min(float(t.min()) for t in tails) - 0.02), 1.005)
    ins.tick_params(labelsize=7)
    ins.set_title(f"zoom: recall ≥ {ZOOM_RECALL:g}", fontsize=7)
    ax.indicate_inset_zoom(ins, edgecolor=style.MUTED)


def plot_roc_curves(r: CurveSet):
    return plot_curves(r)


def plot_pr_curves(r: CurveSet):
    return plot_curves(r)


# --------------------------------------------------------------------------- calibration
def plot_calibration_curves(r: CalibrationSet):
    """Reliability diagrams overlaid (top) with each run's count per bin (bottom), one column per panel."""
    panels = [p for p in r.panels if (r.legend["panel"] == p["panel"]).any()]
    n = len(panels)
    fig = style.figure(6.2 * n, 7.4)
    grid = fig.add_gridspec(2, n, height_ratios=[3, 1])
    for j, panel in enumerate(panels):
        ax = fig.add_subplot(grid[0, j])
        axc = fig.add_subplot(grid[1, j], sharex=ax)
        leg = r.legend[r.legend["panel"] == panel["panel"]].to_dict(orient="records")
        width = 1.0 / r.n_bins / (len(leg) + 1)
        for k, row in enumerate(leg):
            c = colour(r.runs, row["run"])
            b = r.bins[(r.bins["panel"] == panel["panel"]) & (r.bins["run"] == row["run"])]
            ax.plot(b["confidence"], b["observed"], "o-", color=c, ms=4, lw=1.4,
                    label=f"{_short(row['run'])}: ECE {style.with_interval(row['ece'], row['low'], row['high'])} (n={row['n']})")
            axc.bar(b["lo"] + (k + 0.5) * width, b["count"], width=width, color=c, align="edge", alpha=0.85)
        ax.plot([0, 1], [0, 1], ls="--", color=style.MUTED, lw=0.8, label="perfect calibration")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        target = leg[0]["target"] if leg else ""
        ax.set_ylabel("observed frequency" if target == "positive class" else "accuracy (share correct)")
        handles, labels = ax.get_legend_handles_labels()
        axc.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.42), fontsize=7, frameon=False)
        ax.set_title(f"{panel['title']}\n({target} confidence)")
        plt.setp(ax.get_xticklabels(), visible=False)
        axc.set_xlabel("confidence (mean per bin)" if target != "positive class" else "predicted probability")
        axc.set_ylabel("samples per bin")
        axc.set_yscale("log")
        axc.yaxis.set_major_formatter(ScalarFormatter())
        axc.yaxis.set_minor_formatter(NullFormatter())
    style.suptitle(fig, f"Calibration of {len(r.legend['run'].unique())} runs ({r.n_bins} equal-width bins; ECE "
                        f"with {r.level:.0%} interval from {r.n_boot} bootstrap resamples){_grouped(r)}")
    _note(fig, r.convention)
    return fig


# --------------------------------------------------------------------------- metrics table
def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _signed(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}".replace("-", "−")


def plot_metrics_table(r: MetricsComparison):
    """Top: each run's numbers with intervals; bottom: run − reference with the interval of the difference,
    green/red where the difference is larger than the noise (better/worse), white where it is not."""
    metrics = [m for m in r.metrics if m in r.runs.columns and r.runs[m].notna().any()]
    runs = r.runs.to_dict(orient="records")
    diffs = r.differences
    has_diffs = len(diffs) > 0
    width = max(8.0, 1.12 * len(metrics) + 4.8)
    h_top = 0.42 * (len(runs) + 1) + 0.4
    d_rows = diffs[["run", "reference"]].drop_duplicates().to_dict(orient="records") if has_diffs else []
    h_bottom = 0.42 * (len(d_rows) + 1) + 0.4 if has_diffs else 0.0
    fig = style.figure(width, h_top + h_bottom + 1.6)
    grid = fig.add_gridspec(2 if has_diffs else 1, 1, height_ratios=[h_top, h_bottom] if has_diffs else [1])
    ax = fig.add_subplot(grid[0])
    header = ["run", "group", "n"] + [f"{LABELS[m]} ({'↑' if r.directions[m].startswith('higher') else '↓'})"
                                      for m in metrics]
    rows, colours = [], []
    for row in runs:
        cells = [_short(row["run"], 24) + ("\n(reference)" if row["reference"] else ""), _short(row["group"], 26),
                 str(row["n"])]
        for m in metrics:
            v, lo, hi = row.get(m), row.get(f"{m}_low"), row.get(f"{m}_high")
            cells.append(_fmt(v) + ("" if lo is None or hi is None or not np.isfinite(lo)
                                    else f"\n[{_fmt(lo)}, {_fmt(hi)}]"))
        rows.append(cells)
        colours.append([REF if row["reference"] else SAME] * len(cells))
    _table(ax, header, rows, colours, col_widths=[1.9, 1.9, 0.5] + [1.12] * len(metrics))
    ax.set_title(f"Each run's numbers (as `mlviz best-model` logs them) with {r.level:.0%} bootstrap intervals",
                 fontsize=9)
    if has_diffs:
        ax2 = fig.add_subplot(grid[1])
        header2 = ["run", "reference", "test (n)"] + [f"Δ {LABELS[m]}" for m in metrics]
        rows2, colours2 = [], []
        for pair in d_rows:
            sub = diffs[(diffs["run"] == pair["run"]) & (diffs["reference"] == pair["reference"])]
            first = sub.iloc[0]
            test = "paired" if first["test"].startswith("paired") else "unpaired"
            test += " by group" if "group" in first["test"] else ""
            n = f"n={int(first['n_matched'])}" if test.startswith("paired") else \
                f"n={int(first['n_run'])}/{int(first['n_reference'])}"
            cells = [_short(pair["run"], 24), _short(pair["reference"], 24), f"{test}\n{n}"]
            cols = [SAME, SAME, SAME]
            for m in metrics:
                d = sub[sub["metric"] == m]
                if d.empty:
                    cells.append("–")
                    cols.append(SAME)
                    continue
                d = d.iloc[0]
                cells.append(f"{_signed(d['diff'])}\n[{_signed(d['low'])}, {_signed(d['high'])}]"
                             if d["low"] is not None and np.isfinite(d["low"]) else _signed(d["diff"]))
                cols.append(SAME if not d["significant"] else BETTER if d["verdict"].startswith("better") else WORSE)
            rows2.append(cells)
            colours2.append(cols)
        _table(ax2, header2, rows2, colours2, col_widths=[1.9, 1.9, 0.7] + [1.12] * len(metrics))
        ax2.set_title("Difference run − reference with its interval: green = better, red = worse (the interval "
                      "excludes 0: larger than the noise); white = no difference", fontsize=9)
    style.suptitle(fig, f"Metrics of {len(runs)} runs ({r.n_boot} bootstrap resamples, seed {r.seed}){_grouped(r)}")
    _note(fig, "↑ higher is better, ↓ lower is better. Paired: both runs resampled on the same validation "
               "samples (matched by sample id, or by row when neither run has ids and the labels agree row by row); "
               "unpaired: each run resampled on its own; by group: whole groups (patients, subjects, ...) "
               "resampled, the same groups for both runs when paired. Multi-output runs: "
               "means over heads, without intervals.")
    return fig


def _grouped(r) -> str:
    """The end of a title naming the runs whose bootstrap resampled whole groups ('' when none did)."""
    units = getattr(r, "units", None) or {}
    grouped = {run: u for run, u in units.items() if u != "samples"}
    if not grouped:
        return ""
    if len(set(grouped.values())) == 1:
        who = "every run" if len(grouped) == len(units) else f"{len(grouped)} of {len(units)} runs"
        return f"; resamples of whole groups: {next(iter(grouped.values()))} ({who})"
    shown = "; ".join(f"{_short(run, 16)}: {u}" for run, u in list(grouped.items())[:2])
    return f"; resamples of whole groups: {shown}" + (f" (+{len(grouped) - 2} runs)" if len(grouped) > 2 else "")


def _table(ax, header, rows, colours, col_widths):
    ax.axis("off")
    if not rows:
        style.empty_axis(ax, "no rows")
        return
    total = sum(col_widths)
    tab = ax.table(cellText=rows, colLabels=header, cellLoc="center", bbox=[0, 0, 1, 1],
                   colWidths=[w / total for w in col_widths], cellColours=colours)
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    for j in range(len(header)):
        tab[0, j].set_facecolor("#e0e0e0")
        tab[0, j].set_text_props(fontweight="bold")


# --------------------------------------------------------------------------- sweeps
def plot_importance_comparison(r: ImportanceComparison):
    """Parameter importance of each sweep side by side, parameters in one order on every panel."""
    n = len(r.sweeps)
    fig, axes = style.subplots(1, n, 4.6 * n, max(3.5, 0.42 * len(r.params) + 2.0), sharey=True,
                               sharex=True)
    y = np.arange(len(r.params))[::-1]
    for j, (ax, label, imp) in enumerate(zip(axes[0], r.sweeps, r.results, strict=True)):
        c = colour(r.sweeps, label)
        if imp is None:
            why = next((s["reason"] for s in r.skipped if s["sweep"] == label), "not applicable")
            ax.set_yticks(y, r.params)
            style.empty_axis(ax, "\n".join(textwrap.wrap(why, 40)))
            ax.set_title(_short(label, 40))
            continue
        pos = {p: i for i, p in enumerate(imp.params)}
        for yi, p in zip(y, r.params, strict=True):
            if p not in pos:
                ax.text(0.01, yi, "not varied", va="center", fontsize=7, color=style.MUTED,
                        transform=ax.get_yaxis_transform())
                continue
            i = pos[p]
            v, lo, hi = imp.importance[i], imp.ci_low[i], imp.ci_high[i]
            ax.barh(yi, max(v, 0.0), color=c, alpha=0.85)
            ax.errorbar(v, yi, xerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="|", color="black", capsize=3, lw=1)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, r.params)
        ax.set_xlabel(f"ω² for {imp.objective} (95% CI)")
        r2 = "" if imp.forest_r2 is None else f"; forest R² {imp.forest_r2:.2f}"
        effects = (f"main effects overlap (sum {imp.main_effects_total:.0%})" if imp.main_effects_overlap
                   else f"main effects {imp.main_effects_total:.0%}")
        ax.set_title(f"{_short(label, 40)}\n{imp.n_runs} stage-1 runs; {effects}{r2}", fontsize=9)
        if j:
            ax.tick_params(labelleft=False)
    fig.suptitle("Parameter importance per sweep: the share of the objective's variance each parameter "
                 "explains alone\n(ω², bias-corrected one-way ANOVA; whiskers: 95% bootstrap interval)", fontsize=10)
    return fig


def plot_learning_curves(r: CurvesComparison):
    """One panel per metric, one line per run or sweep (band: min–max over seeds where there are several)."""
    n = len(r.keys)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = style.subplots(rows, cols, 4.6 * cols, 3.8 * rows + 0.6)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, key in zip(axes.flat, r.keys, strict=False):
        for line in r.lines:
            cur = r.curves[(r.curves["key"] == key) & (r.curves["line"] == line)].sort_values("step")
            if cur.empty:
                continue
            c = colour(r.lines, line)
            n_runs = int(cur["n_runs"].max())
            ax.plot(cur["step"], cur["mean"], "-", marker="o" if len(cur) <= 20 else None, ms=3, color=c,
                    label=_short(line, 32) + (f" (n={n_runs} seeds)" if n_runs > 1 else ""))
            if n_runs > 1:
                ax.fill_between(cur["step"], cur["low"], cur["high"], color=c, alpha=0.18, lw=0)
        ax.set_title(key)
        ax.set_xlabel("step (epoch)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = {}, {}
    for ax in axes.flat[:n]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
            labels[lab] = lab
    fig.legend(list(handles.values()), list(labels), loc="outside lower center", ncols=min(len(handles), 3),
               fontsize=8, frameon=False)
    band = f"; band: {r.band}" if r.band and (r.curves["n_runs"] > 1).any() else ""
    fig.suptitle(f"Learning curves: {r.what}{band}", fontsize=10)
    return fig


def plot_stage_agreement(r: AgreementComparison):
    """Stage-1 score against stage-2 score per candidate, one panel per sweep."""
    from mlviz.render.stage2 import draw_agreement

    n = len(r.sweeps)
    fig, axes = style.subplots(1, n, 5.4 * n, 5.2)
    for ax, label, res in zip(axes[0], r.sweeps, r.results, strict=True):
        if res is None:
            why = next((s["reason"] for s in r.skipped if s["sweep"] == label), "not applicable")
            style.empty_axis(ax, "\n".join(textwrap.wrap(why, 40)))
            ax.set_title(_short(label, 40))
            continue
        draw_agreement(ax, res)
        ax.set_title(f"{_short(label, 40)}: {res.n_candidates} candidates\n"
                     + textwrap.fill(f"stage-1 score: {res.stage1_source}", 75), fontsize=9)
    fig.suptitle("Stage 1 → stage 2 agreement per sweep (error bars: std over seeds; ρ, τ with 95% bootstrap "
                 "intervals)")
    return fig
