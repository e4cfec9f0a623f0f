"""best_model/ diagnostics: the predictions contract, numbers against scikit-learn, bad inputs, and every
figure rendering for binary, multi-class, multi-output and regression predictions."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from mlviz.analysis import NotApplicable
from mlviz.analysis.diagnostics import (
    RankedScores,
    bootstrap_ranking,
    case_gallery,
    confusion_analysis,
    hardest_samples,
    pr_analysis,
    resample_counts,
    roc_analysis,
    slice_metrics,
    threshold_analysis,
)
from mlviz.analysis.predictions import ColumnMap, predictions_from_arrays, predictions_from_frame
from mlviz.analysis.stats import to_jsonable
from mlviz.demo.sweep import contract, predictions_frame
from mlviz.errors import MlvizError
from mlviz.figures.model import BEST_MODEL_FIGURES, PROGRESS_FIGURES, analyse_predictions

N_BOOT = 60


# --------------------------------------------------------------------------- synthetic predictions
def fake_task(kind: str, n: int = 240, k: int = 3, heads=("left", "right"), seed: int = 0):
    rng = np.random.default_rng(seed)
    if kind == "binary":
        y, classes = (rng.random(n) < 0.3).astype(int), ["neg", "pos"]
    elif kind == "multiclass":
        y, classes = rng.integers(0, k, n), [f"c{i}" for i in range(k)]
    else:
        y, classes = rng.integers(0, k, (n, len(heads))), ["low", "mid", "high"][:k]
    return SimpleNamespace(task=kind, val_ids=np.arange(1000, 1000 + n), y_val=y, class_names=classes,
                           head_names=list(heads), n_classes=len(classes), x_val=rng.random((n, 1, 8, 8)),
                           val_digits=None)


def synthetic_probs(task, signal: float = 2.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if task.task == "binary":
        z = signal * (2 * task.y_val - 1) + rng.normal(0, 1.5, len(task.y_val))
        return 1 / (1 + np.exp(-z))
    y = task.y_val
    onehot = np.eye(task.n_classes)[y]
    z = signal * onehot + rng.normal(0, 1.0, onehot.shape)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def frame(kind: str, **kw) -> tuple[pd.DataFrame, dict, object]:
    task = fake_task(kind, **kw)
    df = predictions_frame(task, synthetic_probs(task))
    df["site"] = np.where(np.arange(len(df)) % 3 == 0, "A", "B")
    return df, contract(task), task


def regression_frame(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    y = rng.normal(10, 3, n)
    return pd.DataFrame({"sample_id": np.arange(n), "y_true": y, "y_pred": y + rng.normal(0.5, 1.0, n),
                         "site": np.where(np.arange(n) % 2 == 0, "A", "B")})


def images_for(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 8, 8)).astype(np.float32)


# --------------------------------------------------------------------------- the contract
def test_detects_the_demo_layouts_with_and_without_contract():
    for kind, task_name in (("binary", "binary"), ("multiclass", "multiclass"), ("multioutput", "multioutput")):
        df, con, task = frame(kind)
        for preds in (predictions_from_frame(df, contract=con), predictions_from_frame(df)):
            assert preds.task == task_name
            assert preds.n == len(df)
            assert preds.id_column == "sample_id" and preds.image_column == "image_index"
            assert "site" in preds.group_columns
            assert "pred" not in preds.group_columns
    preds = predictions_from_frame(frame("multioutput")[0])
    assert preds.head_names == ["left", "right"] and preds.scores.shape == (240, 2, 3)
    assert preds.head_classes == [["low", "mid", "high"]] * 2


def test_seed_000_layout_label_and_prob_header():
    df = pd.DataFrame({"clip": [f"c{i}" for i in range(6)], "label": [0, 1, 1, 0, 1, 0],
                       "prob_header": [0.1, 0.8, 0.6, 0.3, 0.9, 0.2]})
    preds = predictions_from_frame(df)
    assert preds.task == "binary" and preds.class_names == ["not header", "header"]
    np.testing.assert_allclose(preds.scores, df["prob_header"])
    mapped = predictions_from_frame(df, ColumnMap(label="label", scores=["prob_header"]))
    np.testing.assert_allclose(mapped.scores, preds.scores)
    renamed = predictions_from_frame(df, ColumnMap.parse("rename=prob_header:score"))
    assert renamed.task == "binary" and renamed.source["scores"] == ["score"]


def test_column_map_names_columns_and_string_labels():
    df = pd.DataFrame({"truth": ["cat", "dog", "bird", "dog"], "p_cat": [0.7, 0.1, 0.2, 0.2],
                       "p_dog": [0.2, 0.8, 0.1, 0.7], "p_bird": [0.1, 0.1, 0.7, 0.1], "case": ["x", "y", "x", "y"]})
    preds = predictions_from_frame(df, {"label": "truth", "score_prefix": "p_", "class_names": ["cat", "dog", "bird"],
                                        "group_columns": ["case"]})
    assert preds.task == "multiclass"
    assert preds.y_true.tolist() == [0, 1, 2, 1]
    assert preds.group_columns == ["case"]
    two = pd.DataFrame({"label": ["spam", "ham", "spam"], "prob_ham": [0.2, 0.9, 0.4], "prob_spam": [0.8, 0.1, 0.6]})
    b = predictions_from_frame(two)
    assert b.task == "binary" and b.class_names == ["ham", "spam"]
    np.testing.assert_allclose(b.scores, two["prob_spam"])
    assert b.y_true.tolist() == [1, 0, 1]


def test_regression_layouts():
    for t, p in (("y_true", "y_pred"), ("true", "predicted")):
        df = pd.DataFrame({t: [1.0, 2.0, 3.0], p: [1.1, 1.9, 3.2]})
        preds = predictions_from_frame(df)
        assert preds.task == "regression"
        np.testing.assert_allclose(preds.scores, df[p])


def test_raw_binary_scores_are_not_probabilities():
    df = pd.DataFrame({"label": [0, 1, 0, 1], "score": [-2.0, 3.0, 0.5, 7.0]})
    preds = predictions_from_frame(df)
    assert not preds.probabilities
    results, _, _, skipped, headline = analyse_predictions(preds, options={"n_boot": 20})
    assert ("best_model", "roc_curve") in results
    reasons = {s["figure"]: s["reason"] for s in skipped}
    assert "not probabilities" in reasons["calibration"]
    assert "mlviz.ece" not in headline and headline["mlviz.auc"] == 1.0


@pytest.mark.parametrize("df, message", [
    (pd.DataFrame({"truth": [0, 1], "score": [0.2, 0.7]}), "no label column"),
    (pd.DataFrame({"label": [0, 1], "prob": [0.2, 1.7]}), "outside [0, 1]"),
    (pd.DataFrame({"label": [0, 1], "prob_a": [0.2, 0.5], "prob_b": [0.3, 0.5], "prob_c": [0.5, 0.5]}),
     "must sum to 1"),
    (pd.DataFrame({"label": [0, 1, 1], "score": [0.2, np.nan, 0.4]}), "missing"),
    (pd.DataFrame({"label": [0, None, 1], "score": [0.2, 0.3, 0.4]}), "missing values"),
    (pd.DataFrame({"label": [0, 1], "prob_a": [0.2, 0.5], "prob_b": [0.8, 0.5], "prob_c": [0.0, 0.0]}).assign(
        label=[0, 7]), "not among the classes"),
    (pd.DataFrame({"label_h1": [0, 1], "other": [1, 2]}), "no prob_<head>_<class>"),
    (pd.DataFrame(), "empty"),
])
def test_bad_inputs_raise_one_clear_error(df, message):
    with pytest.raises(MlvizError, match=message.replace("[", r"\[").replace("]", r"\]")):
        predictions_from_frame(df)


def test_sum_error_says_no_renormalisation_and_tolerance():
    df = pd.DataFrame({"label": [0, 1], "prob_a": [0.5, 0.5], "prob_b": [0.499, 0.5], "prob_c": [0.0, 0.0]})
    with pytest.raises(MlvizError) as exc:
        predictions_from_frame(df)
    assert "0.001" in str(exc.value) and "does not renormalise" in str(exc.value) and "row 0" in str(exc.value)
    ok = df.assign(prob_b=[0.4995, 0.5])  # within 1e-3: accepted, not changed
    np.testing.assert_allclose(predictions_from_frame(ok).scores[:, 1], ok["prob_b"])


def test_mismatched_lengths_and_column_map_errors():
    with pytest.raises(MlvizError, match="same length"):
        predictions_from_arrays([0, 1, 1], [0.2, 0.3])
    with pytest.raises(MlvizError, match="metadata"):
        predictions_from_arrays([0, 1], [0.2, 0.3], metadata=pd.DataFrame({"a": [1, 2, 3]}))
    with pytest.raises(MlvizError, match="not in the predictions"):
        predictions_from_frame(pd.DataFrame({"label": [0, 1], "score": [0.1, 0.9]}), ColumnMap(label="y"))
    with pytest.raises(MlvizError, match="unknown column-map key"):
        ColumnMap.from_dict({"lable": "y"})
    df, con, task = frame("binary", n=60)
    preds = predictions_from_frame(df, contract=con)
    with pytest.raises(MlvizError, match="image array holds 10 images"):
        hardest_samples(preds, images=images_for(10))


# --------------------------------------------------------------------------- numbers against scikit-learn
def test_ranking_statistics_match_sklearn_with_weights_and_ties():
    rng = np.random.default_rng(3)
    for ties in (False, True):
        y = rng.integers(0, 2, 400)
        s = rng.random(400) * 0.7 + 0.3 * y
        if ties:
            s = np.round(s, 1)
        ranked = RankedScores(y, s)
        for _ in range(3):
            w = np.bincount(rng.integers(0, 400, 400), minlength=400).astype(float)
            stats = ranked.stats(w[ranked.layout][None, :], grid=np.linspace(0, 1, 11))
            assert stats["auc"][0] == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
            assert stats["ap"][0] == pytest.approx(average_precision_score(y, s, sample_weight=w), abs=1e-12)
            fpr, tpr, _ = roc_curve(y, s, sample_weight=w, drop_intermediate=False)
            ref = [tpr[fpr <= g + 1e-12].max() for g in np.linspace(0, 1, 11)]
            np.testing.assert_allclose(stats["tpr"][0], ref, atol=1e-12)


def test_resamples_are_reproducible_and_sum_to_n():
    a = np.vstack(list(resample_counts(50, 30, seed=4, max_cells=200)))
    b = np.vstack(list(resample_counts(50, 30, seed=4)))
    assert a.shape == (30, 50) and (a.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(a, b)  # chunking does not change the resamples
    y = np.r_[np.zeros(30), np.ones(20)].astype(int)
    s = np.linspace(0, 1, 50)
    r1 = bootstrap_ranking(y, s, 40, seed=1)
    r2 = bootstrap_ranking(y, s, 40, seed=1, coherent=True)
    assert r1["auc"].shape == (40,) and np.isfinite(r1["auc"]).all()
    # coherent resample b is exactly resample_counts' b-th resample
    w = next(resample_counts(50, 40, seed=1))
    np.testing.assert_allclose(r2["auc"][0], roc_auc_score(y, s, sample_weight=w[0]))


def test_roc_and_pr_match_sklearn_binary_and_multiclass():
    df, con, _ = frame("binary")
    preds = predictions_from_frame(df, contract=con)
    roc = roc_analysis(preds, n_boot=200)
    row = roc.summary.iloc[0]
    assert row["auc"] == pytest.approx(roc_auc_score(preds.y_true, preds.scores))
    assert row["auc_low"] <= row["auc"] <= row["auc_high"]
    fpr, tpr, thr = roc_curve(preds.y_true, preds.scores)
    j = np.argmax(tpr - fpr)
    assert row["youden_threshold"] == pytest.approx(thr[j]) and row["youden_j"] == pytest.approx(tpr[j] - fpr[j])
    best_f1 = f1_score(preds.y_true, preds.scores >= row["f1_threshold"])
    assert row["max_f1"] == pytest.approx(best_f1)
    grid = np.unique(preds.scores)
    assert best_f1 >= max(f1_score(preds.y_true, preds.scores >= t) for t in grid[::7]) - 1e-12
    band = roc.band
    assert (band["tpr_low"] <= band["tpr_high"] + 1e-12).all()
    pr = pr_analysis(preds, n_boot=200)
    assert pr.summary.iloc[0]["ap"] == pytest.approx(average_precision_score(preds.y_true, preds.scores))
    assert pr.summary.iloc[0]["prevalence"] == pytest.approx(preds.y_true.mean())

    mdf, mcon, _ = frame("multiclass", k=4)
    mp = predictions_from_frame(mdf, contract=mcon)
    mroc = roc_analysis(mp, n_boot=100)
    for k in range(4):
        got = mroc.summary.set_index("class").loc[f"c{k}", "auc"]
        assert got == pytest.approx(roc_auc_score(mp.y_true == k, mp.scores[:, k]))
    assert mroc.macro.iloc[0]["auc"] == pytest.approx(roc_auc_score(mp.y_true, mp.scores, multi_class="ovr",
                                                                     average="macro"))
    lo, hi = mroc.macro.iloc[0][["auc_low", "auc_high"]]
    assert lo <= mroc.macro.iloc[0]["auc"] <= hi


def test_threshold_table_and_confusion_match_sklearn():
    df, con, _ = frame("binary")
    preds = predictions_from_frame(df, contract=con)
    tm = threshold_analysis(preds)
    for row in tm.table.to_dict(orient="records"):
        tn, fp, fn, tp = confusion_matrix(preds.y_true, preds.scores >= row["threshold"], labels=[0, 1]).ravel()
        assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (tp, fp, tn, fn)
        assert row["specificity"] == pytest.approx(tn / (tn + fp))
    assert tm.chosen.iloc[0]["threshold"] == 0.5 and "0.5" in tm.chosen.iloc[0]["rule"]
    cm = confusion_analysis(preds)
    first = cm.matrices[0]
    assert first.threshold == 0.5
    np.testing.assert_array_equal(first.counts, confusion_matrix(preds.y_true, preds.scores >= 0.5))
    assert all(abs(sum(r) - 100) < 1e-9 for r in first.row_percent)
    assert len(cm.matrices) == 2 and cm.matrices[1].rule == "max F1"
    raw = confusion_analysis(preds, threshold="youden")
    assert raw.matrices[0].rule == "Youden J"

    mdf, mcon, _ = frame("multioutput")
    mo = predictions_from_frame(mdf, contract=mcon)
    mats = confusion_analysis(mo).matrices
    assert [m.head for m in mats] == ["left", "right"]
    np.testing.assert_array_equal(mats[1].counts, confusion_matrix(mo.y_true[:, 1], mo.scores[:, 1].argmax(1)))


def test_slices_are_worst_first_with_intervals():
    df, con, _ = frame("binary")
    preds = predictions_from_frame(df, contract=con)
    assert "ink_level" in preds.group_columns  # the demo's own grouping column is found too
    sm = slice_metrics(preds, group_columns=["site"], n_boot=100)
    t = sm.table
    assert list(t["column"].unique()) == ["site"]
    assert t["accuracy"].is_monotonic_increasing
    for row in t.to_dict(orient="records"):
        mask = df["site"].to_numpy() == row["value"]
        assert row["n"] == mask.sum()
        assert row["accuracy"] == pytest.approx(((preds.scores[mask] >= 0.5) == preds.y_true[mask]).mean())
        assert row["auc"] == pytest.approx(roc_auc_score(preds.y_true[mask], preds.scores[mask]))
        assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"]
    no_groups = predictions_from_frame(df.drop(columns=["site", "ink_level"]), contract=con)
    with pytest.raises(NotApplicable, match="grouping column"):
        slice_metrics(no_groups)


def test_hardest_samples_and_gallery_return_ids_and_images():
    df, con, _ = frame("binary")
    preds = predictions_from_frame(df, contract=con)
    imgs = images_for(len(df))
    hs = hardest_samples(preds, k=5, images=imgs)
    fn = hs.table[hs.table["case"] == "FN"]
    all_fn = np.sort(preds.scores[(preds.y_true == 1) & (preds.scores < 0.5)])
    np.testing.assert_allclose(fn["score"], all_fn[:5])
    fp = hs.table[hs.table["case"] == "FP"]
    all_fp = np.sort(preds.scores[(preds.y_true == 0) & (preds.scores >= 0.5)])[::-1]
    np.testing.assert_allclose(fp["score"], all_fp[:5])
    np.testing.assert_array_equal(hs.table["sample_id"], df["sample_id"].to_numpy()[hs.table["row"]])
    np.testing.assert_array_equal(hs.table["image_index"], df["image_index"].to_numpy()[hs.table["row"]])
    assert hs.pixels.array.shape == (len(hs.table), 8, 8)
    json.dumps(to_jsonable(hs))  # the pixels stay out of the JSON
    assert "shape" in to_jsonable(hs)["pixels"]
    gal = case_gallery(preds, per_case=3, images=imgs)
    assert set(gal.table["case"]) == {"TP", "TN", "FP", "FN"}
    assert gal.table.groupby("case").size().max() == 3
    mc = predictions_from_frame(*frame("multiclass")[:1])
    hm = hardest_samples(mc, k=4)
    assert (hm.table["label"] != hm.table["predicted"]).all() and hm.table["p_true"].is_monotonic_increasing
    assert hm.pixels.array is None


def test_single_class_skips_only_the_two_class_figures():
    df, con, _ = frame("binary", n=80)
    df["label"] = 0
    preds = predictions_from_frame(df, contract=con)
    results, _, _, skipped, headline = analyse_predictions(preds, options={"n_boot": 20})
    reasons = {s["figure"]: s["reason"] for s in skipped if s["section"] == "best_model"}
    for stem in ("roc_curve", "precision_recall", "metrics_vs_threshold"):
        assert "only one class" in reasons[stem]
    for stem in ("calibration", "confusion_matrix", "score_distributions", "case_gallery"):
        assert ("best_model", stem) in results
    assert "mlviz.auc" not in headline and "mlviz.ece" in headline


# --------------------------------------------------------------------------- every figure renders
def _render_all(results, renderers):
    import matplotlib.pyplot as plt

    for key, result in results.items():
        fig = renderers[key].render(result)
        fig.savefig(io.BytesIO(), format="png", dpi=40)
        plt.close(fig)
        json.dumps(to_jsonable(result), allow_nan=False)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multioutput"])
def test_every_figure_renders(kind):
    df, con, task = frame(kind, n=150)
    preds = predictions_from_frame(df, contract=con)
    rng = np.random.default_rng(0)
    per = pd.concat([predictions_frame(task, synthetic_probs(task, signal=e, seed=e), epoch=e) for e in (1, 2, 3)])
    per = per.sample(frac=1.0, random_state=0)  # epochs interleaved, rows shuffled: followed by sample id
    per_epoch = predictions_from_frame(per, contract=con)
    results, captions, renderers, skipped, headline = analyse_predictions(
        preds, per_epoch=per_epoch, images=rng.random((150, 1, 8, 8)),
        options={"n_boot": N_BOOT, "hardest_k": 4, "gallery_per_case": 2, "trajectories_per_class": 4})
    stems = {k[1] for k in results}
    expected = {s.key for s in BEST_MODEL_FIGURES if not s.key.startswith("regression")} | {s.key for s in PROGRESS_FIGURES}
    assert stems == expected, skipped
    assert {s["figure"] for s in skipped} == {"regression_predicted_vs_true", "regression_residuals",
                                             "regression_error_by_slice"}
    assert all(captions[k] for k in results)
    _render_all(results, renderers)
    if kind == "multioutput":
        assert "mlviz.left.auc" in headline and "mlviz.right.ece" in headline and "mlviz.auc" in headline
    else:
        assert {"mlviz.auc", "mlviz.ap", "mlviz.ece", "mlviz.brier", "mlviz.nll", "mlviz.accuracy"} <= set(headline)


def test_regression_figures_render():
    preds = predictions_from_frame(regression_frame(), ColumnMap(group_columns=["site"]))
    results, _, renderers, skipped, headline = analyse_predictions(preds, options={"n_boot": N_BOOT})
    assert {k[1] for k in results} == {"regression_predicted_vs_true", "regression_residuals",
                                       "regression_error_by_slice"}
    fit = results[("best_model", "regression_predicted_vs_true")].metrics.set_index("metric")
    err = preds.scores - preds.y_true
    assert fit.loc["mae", "value"] == pytest.approx(np.abs(err).mean())
    assert fit.loc["rmse", "low"] <= fit.loc["rmse", "value"] <= fit.loc["rmse", "high"]
    assert headline["mlviz.bias"] == pytest.approx(err.mean())
    _render_all(results, renderers)


def test_demo_digits_with_logistic_regression_and_run_folder(tmp_path):
    """The demo's real data through the model pipeline's reader (CSV + contract.json) into a report folder."""
    from sklearn.linear_model import LogisticRegression

    from mlviz.demo.data import load_task
    from mlviz.sections.model import analyse_run_predictions

    task = load_task("binary")
    x = task.x_train.reshape(len(task.x_train), -1)
    model = LogisticRegression(max_iter=300).fit(x, task.y_train)
    probs = model.predict_proba(task.x_val.reshape(len(task.x_val), -1))[:, 1]
    (tmp_path / "predictions").mkdir()
    predictions_frame(task, probs).to_csv(tmp_path / "predictions/val_predictions.csv", index=False)
    (tmp_path / "predictions/contract.json").write_text(json.dumps(contract(task)))
    report, headline, preds = analyse_run_predictions(tmp_path, "predictions/val_predictions.csv", None,
                                                      images=task.x_val, options={"n_boot": N_BOOT})
    assert headline["mlviz.auc"] == pytest.approx(roc_auc_score(task.y_val, probs))
    assert headline["mlviz.accuracy"] == pytest.approx(((probs >= 0.5) == task.y_val).mean())
    assert preds.class_names == ["not 3", "3"]
    assert ("best_model", "roc_curve") in report.results and report.kind == "best_model"
