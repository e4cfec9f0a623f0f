"""Score columns under the names people give them, found without --scores.

Real predictions (a logistic regression on scikit-learn's digits, "is it a 3?") written under each name;
the numbers read must be exactly the model's probabilities, and ROC AUC from them equal scikit-learn's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import describe_result, run_cli

from mlviz.analysis.predictions import predictions_from_frame
from mlviz.errors import MlvizError


@pytest.fixture(scope="module")
def digits_binary():
    """(labels, probabilities) of a real binary classifier on the digits validation split."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    y = (y == 3).astype(int)
    xtr, xva, ytr, yva = train_test_split(x / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    probs = LogisticRegression(C=0.05, max_iter=500).fit(xtr, ytr).predict_proba(xva)[:, 1]
    return yva, probs


def _auc(preds):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(preds.y_true, preds.scores)


@pytest.mark.parametrize("name", ["probabilities", "probability", "proba", "y_score", "y_pred_proba",
                                  "pred_proba", "predicted_probability", "Probabilities"])
def test_known_score_names(digits_binary, name):
    y, p = digits_binary
    frame = pd.DataFrame({"sample_id": np.arange(len(y)), "label": y, name: p})
    preds = predictions_from_frame(frame)
    assert preds.task == "binary"
    assert preds.source == {"label": "label", "scores": [name]}
    np.testing.assert_array_equal(preds.scores, p)
    assert preds.probabilities is True
    assert preds.notes == []


def test_the_real_projects_table(digits_binary):
    """`labels, probabilities, Fat_percentage, Patient ID` → label `labels`, score `probabilities`."""
    from sklearn.metrics import roc_auc_score

    y, p = digits_binary
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"labels": y, "probabilities": p, "Fat_percentage": rng.uniform(5, 40, len(y)).round(1),
                          "Patient ID": 1000 + np.arange(len(y))})
    preds = predictions_from_frame(frame)
    assert preds.source == {"label": "labels", "scores": ["probabilities"]}
    assert preds.class_names == ["0", "1"]
    assert _auc(preds) == pytest.approx(roc_auc_score(y, p))
    assert int(preds.y_true.sum()) == int(y.sum()) == 55


@pytest.mark.parametrize("name", ["pred", "y_pred", "prediction"])
def test_a_prediction_column_holding_probabilities_is_the_score(digits_binary, name):
    y, p = digits_binary
    frame = pd.DataFrame({"label": y, name: p})
    preds = predictions_from_frame(frame)
    assert preds.task == "binary"
    assert preds.source["scores"] == [name]
    np.testing.assert_array_equal(preds.scores, p)
    assert any(f"'{name}'" in n and "probabilities" in n for n in preds.notes), preds.notes


def test_a_hard_prediction_column_is_not_a_score(digits_binary):
    y, p = digits_binary
    frame = pd.DataFrame({"label": y, "pred": (p >= 0.5).astype(int), "age": np.arange(len(y)) + 20})
    with pytest.raises(MlvizError, match="no score columns") as err:
        predictions_from_frame(frame)
    assert "--scores" in str(err.value)


def test_the_one_numeric_column_in_unit_range_is_used_and_said(digits_binary):
    y, p = digits_binary
    frame = pd.DataFrame({"sample_id": np.arange(len(y)), "image_index": np.arange(len(y)), "target": y,
                          "model_out": p, "weight_kg": np.linspace(50, 90, len(y)), "site": "A"})
    preds = predictions_from_frame(frame)
    assert preds.source == {"label": "target", "scores": ["model_out"]}
    np.testing.assert_array_equal(preds.scores, p)
    assert preds.notes == ["score column: 'model_out', the only numeric column in [0, 1] besides the label "
                           "'target' (pass --scores to choose another)"]


def test_two_candidate_columns_ask_which(digits_binary):
    y, p = digits_binary
    frame = pd.DataFrame({"label": y, "model_a": p, "model_b": 1 - p})
    with pytest.raises(MlvizError, match=r"several columns could be the score \(model_a, model_b\)"):
        predictions_from_frame(frame)


def test_regression_is_not_taken_for_a_score():
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 1, 200)
    frame = pd.DataFrame({"y_true": t, "y_pred": np.clip(t + rng.normal(0, 0.05, 200), 0, 1)})
    preds = predictions_from_frame(frame)
    assert preds.task == "regression"


def test_best_model_cli_reads_the_real_projects_table(digits_binary, tmp_path, clean_env):
    """End to end: the table logged to a run, `best-model --out` without --scores; AUC as scikit-learn's."""
    import json

    from mlflow import MlflowClient
    from sklearn.metrics import roc_auc_score

    y, p = digits_binary
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("bodyfat", artifact_location=str(tmp_path / "artifacts"))
    rid = client.create_run(exp).info.run_id
    src = tmp_path / "src" / "predictions"
    src.mkdir(parents=True)
    pd.DataFrame({"labels": y, "probabilities": p, "Fat_percentage": np.linspace(8, 35, len(y)).round(1),
                  "Patient ID": 1000 + np.arange(len(y))}).to_csv(src / "val_predictions.csv", index=False)
    client.log_artifact(rid, str(src / "val_predictions.csv"), "predictions")
    client.set_terminated(rid, "FINISHED")
    r = run_cli("best-model", "--tracking-uri", uri, "--run", rid, "--out", tmp_path / "out", "--n-boot", "20",
                "--no-heatmaps")
    assert r.exit_code == 0, describe_result(r)
    summary = json.loads((tmp_path / "out" / "mlviz" / "best_model_summary.json").read_text())
    assert summary["headline_metrics"]["mlviz.auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
