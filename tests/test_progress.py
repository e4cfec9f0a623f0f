"""training_progress/: metrics per epoch, sample alignment, late bloomers at each epoch's own threshold,
decision boundary; numbers against scikit-learn and hand-built cases."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mlviz.analysis import NotApplicable
from mlviz.analysis.diagnostics import max_f1_point
from mlviz.analysis.predictions import predictions_from_frame
from mlviz.analysis.progress import (
    align,
    checkpoint_epochs,
    decision_boundary_evolution,
    late_bloomers,
    metrics_evolution,
    sample_trajectories,
    score_evolution,
)
from mlviz.figures.model import analyse_predictions


def per_epoch_binary(n=120, epochs=(1, 2, 3, 4), seed=0, shuffle=True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    parts = []
    for e in epochs:
        z = e * 0.8 * (2 * y - 1) + rng.normal(0, 1.2, n)
        parts.append(pd.DataFrame({"epoch": e, "sample_id": [f"s{i}" for i in range(n)], "image_index": np.arange(n),
                                   "label": y, "score": 1 / (1 + np.exp(-z))}))
    df = pd.concat(parts, ignore_index=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True) if shuffle else df


def test_metrics_per_epoch_match_sklearn():
    df = per_epoch_binary()
    pe = predictions_from_frame(df)
    assert pe.has_epochs and pe.epochs() == [1, 2, 3, 4]
    r = metrics_evolution(pe, n_boot=100)
    for row in r.table.to_dict(orient="records"):
        sub = df[df["epoch"] == row["epoch"]]
        assert row["auc"] == pytest.approx(roc_auc_score(sub["label"], sub["score"]))
        assert row["ap"] == pytest.approx(average_precision_score(sub["label"], sub["score"]))
        t, f1 = max_f1_point(sub["label"].to_numpy(), sub["score"].to_numpy())
        assert row["threshold"] == pytest.approx(t) and row["f1"] == pytest.approx(f1)
        assert row["auc_low"] <= row["auc"] <= row["auc_high"]
    best = r.best.set_index("metric")
    assert best.loc["auc", "epoch"] == r.table.loc[r.table["auc"].idxmax(), "epoch"]
    fixed = metrics_evolution(pe, n_boot=0, threshold="0.5")
    assert (fixed.table["threshold"] == 0.5).all()


def test_alignment_follows_sample_ids_and_drops_missing_samples():
    df = per_epoch_binary(n=30)
    df = df[~((df["epoch"] == 3) & (df["sample_id"] == "s7"))]  # s7 missing at epoch 3
    pe = predictions_from_frame(df)
    al = align(pe)
    assert al.rows.shape == (4, 29) and al.dropped == 1 and "s7" not in set(al.ids)
    for i, e in enumerate(al.epochs):  # the same sample in each column
        assert (pe.metadata["epoch"].to_numpy()[al.rows[i]] == e).all()
        np.testing.assert_array_equal(pe.sample_ids[al.rows[i]], al.ids)
    no_id = per_epoch_binary(n=20, shuffle=False).drop(columns=["sample_id"])
    al2 = align(predictions_from_frame(no_id))
    assert al2.rows.shape == (4, 20)
    uneven = no_id[~((no_id["epoch"] == 2) & (no_id["image_index"] == 0))]
    with pytest.raises(NotApplicable, match="same number of rows"):
        align(predictions_from_frame(uneven))


def test_late_bloomers_categories_at_a_fixed_threshold():
    # four samples, three epochs, threshold 0.5: a late bloomer, a forgotten one, an unstable one, a steady one
    scores = {"a": [0.2, 0.4, 0.9], "b": [0.8, 0.7, 0.3], "c": [0.9, 0.2, 0.8], "d": [0.9, 0.9, 0.9],
              "e": [0.1, 0.1, 0.1], "n1": [0.1, 0.1, 0.1], "n2": [0.2, 0.6, 0.2]}
    labels = {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "n1": 0, "n2": 0}
    rows = [{"epoch": e + 1, "sample_id": s, "label": labels[s], "score": v[e]} for s, v in scores.items()
            for e in range(3)]
    pe = predictions_from_frame(pd.DataFrame(rows))
    r = late_bloomers(pe, threshold="0.5")
    counts = r.counts.set_index("category")["n"].to_dict()
    assert counts == {"always right": 2, "late bloomer": 1, "forgotten": 1, "unstable, ends right": 2,
                      "unstable, ends wrong": 0, "never right": 1}
    assert r.table["sample_id"].tolist() == ["a"] and r.table["learned_epoch"].tolist() == [3]
    tr = r.transitions.set_index("epoch")
    assert tr.loc[2, "became_right"] == 0 and tr.loc[2, "became_wrong"] == 2  # c and n2
    assert tr.loc[3, "became_right"] == 3  # a, c, n2


def test_late_bloomers_use_each_epochs_own_threshold():
    # the score scale drifts: at a fixed 0.5 every sample would flip; at each epoch's own threshold none does
    y = np.array([0, 0, 0, 1, 1, 1])
    base = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    rows = [{"epoch": e, "sample_id": i, "label": y[i], "score": base[i] * 0.4 + 0.3 * (e - 1)}
            for e in (1, 2, 3) for i in range(6)]
    pe = predictions_from_frame(pd.DataFrame(rows))
    own = late_bloomers(pe)  # default: max-F1 threshold per epoch
    assert own.counts.set_index("category").loc["always right", "n"] == 6
    assert own.thresholds["threshold"].nunique() == 3
    fixed = late_bloomers(pe, threshold="0.5")
    assert fixed.counts.set_index("category").loc["always right", "n"] < 6


def test_trajectories_scores_and_boundary():
    df = per_epoch_binary()
    pe = predictions_from_frame(df)
    tr = sample_trajectories(pe, per_class=5)
    assert tr.n_samples == 120 and set(tr.trajectories["epoch"]) == {1, 2, 3, 4}
    one = tr.trajectories[tr.trajectories["sample_id"] == tr.trajectories["sample_id"].iloc[0]]
    sid = one["sample_id"].iloc[0]
    ref = df[df["sample_id"] == sid].sort_values("epoch")["score"].to_numpy()
    np.testing.assert_allclose(one.sort_values("epoch")["score"], ref)
    assert len(tr.trajectories) == 4 * 10
    se = score_evolution(pe, checkpoints=3)
    assert se.checkpoints == [1, 2, 4] or se.checkpoints == [1, 3, 4]
    assert checkpoint_epochs(list(range(1, 11)), 4) == [1, 4, 7, 10]
    db = decision_boundary_evolution(pe)
    for row in db.table.to_dict(orient="records"):
        sub = df[df["epoch"] == row["epoch"]]
        assert row["threshold"] == pytest.approx(max_f1_point(sub["label"].to_numpy(), sub["score"].to_numpy())[0])
        assert row["positive_median"] == pytest.approx(sub.loc[sub["label"] == 1, "score"].median())
    assert db.table["separation"].iloc[-1] > db.table["separation"].iloc[0]


def test_not_applicable_without_epochs_and_for_multiclass_it_runs():
    df = per_epoch_binary()
    final = predictions_from_frame(df[df["epoch"] == 4].drop(columns=["epoch"]))
    results, _, _, skipped, _ = analyse_predictions(final, per_epoch=None, options={"n_boot": 20})
    reasons = {s["figure"]: s["reason"] for s in skipped if s["section"] == "training_progress"}
    assert len(reasons) == 5 and all("per-epoch predictions" in r for r in reasons.values())
    one = predictions_from_frame(df[df["epoch"] == 4])
    with pytest.raises(NotApplicable, match="at least 2 epochs"):
        late_bloomers(one)
    # multi-class per-epoch predictions, judged by arg-max
    rng = np.random.default_rng(0)
    n, k = 90, 3
    y = rng.integers(0, k, n)
    parts = []
    for e in (1, 2, 3):
        z = e * np.eye(k)[y] + rng.normal(0, 1, (n, k))
        P = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        parts.append(pd.DataFrame({"epoch": e, "sample_id": np.arange(n), "label": y,
                                   **{f"prob_{c}": P[:, c] for c in range(k)}}))
    pe = predictions_from_frame(pd.concat(parts))
    lb = late_bloomers(pe)
    assert lb.counts["n"].sum() == n and lb.thresholds["threshold"].isna().all()
    me = metrics_evolution(pe, n_boot=20)
    for row in me.table.to_dict(orient="records"):
        sub = parts[row["epoch"] - 1]
        P = sub[[f"prob_{c}" for c in range(k)]].to_numpy()
        assert row["accuracy"] == pytest.approx((P.argmax(1) == y).mean())


def test_progress_figures_render_with_images():
    import matplotlib.pyplot as plt

    df = per_epoch_binary(n=80)
    pe = predictions_from_frame(df)
    final = predictions_from_frame(df[df["epoch"] == 4])
    images = np.random.default_rng(0).random((80, 8, 8))
    results, _, renderers, _, _ = analyse_predictions(final, per_epoch=pe, images=images, options={"n_boot": 20})
    progress = {k: v for k, v in results.items() if k[0] == "training_progress"}
    assert len(progress) == 5
    lb = progress[("training_progress", "late_bloomers")]
    if len(lb.table):
        assert lb.pixels.array is not None
    for key, result in progress.items():
        fig = renderers[key].render(result)
        fig.savefig(io.BytesIO(), format="png", dpi=40)
        plt.close(fig)
