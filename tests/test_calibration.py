"""Calibration numbers against references on the same data: ECE/MCE against torchmetrics (equal-width
bins), Brier and NLL against scikit-learn, and the edge cases of the binning convention."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from mlviz.analysis import NotApplicable
from mlviz.analysis.calibration import (
    calibration_analysis,
    equal_mass_bins,
    equal_width_bins,
    expected_calibration_error,
)
from mlviz.analysis.predictions import predictions_from_arrays

torch = pytest.importorskip("torch")
tmc = pytest.importorskip("torchmetrics.functional.classification")


def tm_binary(p, y, n_bins, norm="l1") -> float:
    return float(tmc.binary_calibration_error(torch.from_numpy(np.ascontiguousarray(p, dtype=np.float64)),
                                              torch.from_numpy(np.ascontiguousarray(y)), n_bins=n_bins, norm=norm))


def tm_multiclass(P, y, n_bins, norm="l1") -> float:
    P = np.ascontiguousarray(P, dtype=np.float64)
    return float(tmc.multiclass_calibration_error(torch.from_numpy(P), torch.from_numpy(np.ascontiguousarray(y)),
                                                  num_classes=P.shape[1], n_bins=n_bins, norm=norm))


def metrics_of(preds, **kw) -> dict:
    cal = calibration_analysis(preds, **kw)
    return {r["metric"]: r for r in cal.metrics.to_dict(orient="records")}


def binary_data(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    p = np.clip(rng.beta(2, 3, n) + 0.35 * y, 0, 1)
    return y, p


def multiclass_data(n=1500, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = 1.5 * np.eye(k)[y] + rng.normal(0, 1, (n, k))
    P = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return y, P


@pytest.mark.parametrize("n_bins", [5, 10, 15, 20])
def test_equal_width_ece_and_mce_match_torchmetrics_binary(n_bins):
    y, p = binary_data(seed=n_bins)
    m = metrics_of(predictions_from_arrays(y, p), n_bins=n_bins, n_boot=0)
    assert m["ece"]["value"] == pytest.approx(tm_binary(p, y, n_bins), abs=1e-12)
    assert m["mce"]["value"] == pytest.approx(tm_binary(p, y, n_bins, "max"), abs=1e-12)


@pytest.mark.parametrize("n_bins", [5, 10, 15, 20])
def test_equal_width_ece_and_mce_match_torchmetrics_multiclass(n_bins):
    y, P = multiclass_data(seed=n_bins)
    m = metrics_of(predictions_from_arrays(y, P), n_bins=n_bins, n_boot=0)
    # torchmetrics computes the top-label error in float32
    assert m["ece"]["value"] == pytest.approx(tm_multiclass(P, y, n_bins), abs=2e-6)
    assert m["mce"]["value"] == pytest.approx(tm_multiclass(P, y, n_bins, "max"), abs=2e-6)


def test_confidence_exactly_one_gets_its_own_bin_as_in_torchmetrics():
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    p = np.array([1.0, 1.0, 1.0, 0.95, 0.05, 0.0, 0.6, 0.3])
    idx = equal_width_bins(p, 10)
    assert idx[0] == 10 and idx[3] == 9 and idx[5] == 0  # 1.0 in the extra bin, 0.95 in [0.9, 1)
    ece = expected_calibration_error(p, y, 10)
    assert ece == pytest.approx(tm_binary(p, y, 10), abs=1e-12)
    cal = calibration_analysis(predictions_from_arrays(y, p), n_bins=10, n_boot=0)
    top = cal.bins[(cal.bins["target"] == "positive class") & (cal.bins["strategy"] == "equal_width")]
    one = top[top["bin"] == 10].iloc[0]
    assert (one["lo"], one["hi"], one["count"]) == (1.0, 1.0, 3)
    assert one["observed"] == pytest.approx(2 / 3)
    no_one = calibration_analysis(predictions_from_arrays(y, np.minimum(p, 0.99)), n_bins=10, n_boot=0).bins
    main = no_one[no_one["target"] == "positive class"]
    assert not ((main["strategy"] == "equal_width") & (main["bin"] == 10)).any()
    # multi-class: a top-label confidence of exactly 1
    P = np.array([[1.0, 0.0, 0.0], [0.2, 0.7, 0.1], [0.0, 1.0, 0.0], [0.4, 0.35, 0.25]])
    t = np.array([0, 1, 0, 2])
    m = metrics_of(predictions_from_arrays(t, P), n_bins=10, n_boot=0)
    assert m["ece"]["value"] == pytest.approx(tm_multiclass(P, t, 10), abs=1e-6)


def test_values_on_bin_edges_and_empty_bins():
    # dyadic edges are exact in every float format, so the left-closed convention is checked exactly
    p = np.array([0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 0.125])
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    for n_bins in (4, 8):
        assert expected_calibration_error(p, y, n_bins) == pytest.approx(tm_binary(p, y, n_bins), abs=1e-12)
        assert equal_width_bins(np.array([0.25, 0.5]), 4).tolist() == [1, 2]
    # most of 15 bins empty
    p2 = np.array([0.91, 0.92, 0.93, 0.05])
    y2 = np.array([1, 1, 0, 0])
    assert expected_calibration_error(p2, y2, 15) == pytest.approx(tm_binary(p2, y2, 15), abs=1e-12)
    cal = calibration_analysis(predictions_from_arrays(y2, p2), n_bins=15, n_boot=0)
    ew = cal.bins[(cal.bins["strategy"] == "equal_width") & (cal.bins["target"] == "positive class")]
    assert ew["count"].sum() == 4 and (ew["count"] == 0).sum() == 13
    assert ew.loc[ew["count"] == 0, "confidence"].isna().all()


def test_one_class_only():
    rng = np.random.default_rng(2)
    p = rng.random(200)
    for label in (0, 1):
        y = np.full(200, label)
        m = metrics_of(predictions_from_arrays(y, p), n_bins=15, n_boot=50)
        assert m["ece"]["value"] == pytest.approx(tm_binary(p, y, 15), abs=1e-12)
        assert m["brier"]["value"] == pytest.approx(brier_score_loss(y, p, labels=[0, 1]))
        assert m["nll"]["value"] == pytest.approx(log_loss(y, p, labels=[0, 1]))
        assert m["ece"]["low"] <= m["ece"]["value"] <= m["ece"]["high"]
    y, P = multiclass_data(n=100, k=3)
    y[:] = 1
    m = metrics_of(predictions_from_arrays(y, P), n_bins=15, n_boot=0)
    assert m["ece"]["value"] == pytest.approx(tm_multiclass(P, y, 15), abs=2e-6)


def test_brier_and_nll_match_sklearn_including_zero_and_one():
    y, p = binary_data(n=500)
    p[:3] = [0.0, 1.0, 1.0]
    y[:3] = [1, 0, 1]
    m = metrics_of(predictions_from_arrays(y, p), n_boot=30)
    assert m["brier"]["value"] == pytest.approx(brier_score_loss(y, p))
    assert m["nll"]["value"] == pytest.approx(log_loss(y, p))
    yc, P = multiclass_data(n=500, k=4)
    mc = metrics_of(predictions_from_arrays(yc, P), n_boot=30)
    assert mc["brier"]["value"] == pytest.approx(brier_score_loss(yc, P, labels=[0, 1, 2, 3]))
    assert mc["nll"]["value"] == pytest.approx(log_loss(yc, P, labels=[0, 1, 2, 3]))


def test_classwise_ece_is_the_mean_of_binary_ece_per_class():
    y, P = multiclass_data(n=800, k=4, seed=5)
    m = metrics_of(predictions_from_arrays(y, P), n_bins=10, n_boot=0)
    ref = np.mean([tm_binary(P[:, k], (y == k).astype(int), 10) for k in range(4)])
    assert m["classwise_ece"]["value"] == pytest.approx(ref, abs=1e-12)


def test_equal_mass_bins_hold_equal_counts_and_keep_ties_together():
    rng = np.random.default_rng(0)
    conf = rng.random(1000)
    idx, edges = equal_mass_bins(conf, 10)
    counts = np.bincount(idx, minlength=10)
    assert counts.min() >= 99 and counts.max() <= 101 and len(edges) == 11
    tied = np.r_[np.full(500, 0.9), rng.random(500) * 0.5]
    idx, _ = equal_mass_bins(tied, 10)
    assert len(np.unique(idx[:500])) == 1


def test_bootstrap_intervals_bracket_and_are_reproducible():
    y, p = binary_data(n=800)
    preds = predictions_from_arrays(y, p)
    a = calibration_analysis(preds, n_boot=200, seed=3).metrics
    b = calibration_analysis(preds, n_boot=200, seed=3).metrics
    assert a.equals(b)
    for r in a.to_dict(orient="records"):
        if r["metric"] != "mce":  # a maximum over bins can sit at the edge of its own bootstrap distribution
            assert r["low"] <= r["value"] <= r["high"], r


def test_per_head_calibration_for_multioutput_and_raw_scores_not_applicable():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, (300, 2))
    z = 2 * np.eye(3)[y] + rng.normal(0, 1, (300, 2, 3))
    P = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    preds = predictions_from_arrays(y, P, task="multioutput", head_names=["a", "b"])
    cal = calibration_analysis(preds, n_boot=0, n_bins=15)
    assert cal.heads == ["a", "b"] and cal.targets == {"a": "top label", "b": "top label"}
    ece_b = cal.metrics.set_index(["head", "metric"]).loc[("b", "ece"), "value"]
    assert ece_b == pytest.approx(tm_multiclass(P[:, 1], y[:, 1], 15), abs=2e-6)
    raw = predictions_from_arrays([0, 1, 1], [-1.0, 2.0, 3.0])
    with pytest.raises(NotApplicable, match="not probabilities"):
        calibration_analysis(raw)
