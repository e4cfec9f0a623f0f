"""Typing of stored parameter strings: `parse_scalar`, `infer_param` and log-scale detection.

MLflow stores every parameter as `str(value)`: ints as `'3'`, floats as `repr` (`'0.001'`, `'1e-05'`),
booleans as `'True'`/`'False'`, `None` as `'None'`. These property tests feed exactly such strings.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlviz.sweep import infer_param, is_missing, parse_scalar

# Local settings (not a global profile, so other modules keep theirs): no deadline on a loaded 2-core box.
SETTINGS = settings(deadline=None, max_examples=120, database=None, suppress_health_check=[HealthCheck.too_slow])

SAFE_INT = 2**53  # every int up to here survives a trip through float64
MISSING_TEXT = ["", " ", "None", "none", "NONE", " None ", "nan", "NaN", "null", "NULL", "NA", "n/a", "N/A"]
BOOL_WORDS = {"true", "false"}

ints = st.integers(min_value=-SAFE_INT, max_value=SAFE_INT)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
any_floats = st.floats(allow_nan=False)
missing_raw = st.one_of(st.none(), st.sampled_from(MISSING_TEXT), st.just(float("nan")))


def _float_ok(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _plain_text(text: str) -> bool:
    """Independent oracle: text that is not a number Python can read, not a boolean and not missing."""
    s = text.strip()
    return bool(s) and s.lower() not in BOOL_WORDS | {"none", "null", "nan", "na", "n/a"} and not _float_ok(s)


plain_text = st.text(min_size=1, max_size=20).filter(_plain_text)


# --------------------------------------------------------------------------- parse_scalar


@SETTINGS
@given(ints)
def test_parse_scalar_int_round_trip(i):
    v = parse_scalar(str(i))
    assert type(v) is int and v == i


@SETTINGS
@given(any_floats, st.sampled_from([repr, str]))
def test_parse_scalar_float_round_trip(f, fmt):
    text = fmt(f)
    v = parse_scalar(text)
    assert type(v) is float, (text, v)
    assert v == f  # exact: repr round-trips a float64, and inf stays inf


@pytest.mark.parametrize("text, expected", [("1e-05", 1e-05), ("1E-5", 1e-5), ("-2.5e+03", -2500.0), (".5", 0.5),
                                            ("3.", 3.0), ("1e16", 1e16), ("inf", math.inf), ("-Infinity", -math.inf),
                                            ("  0.1  ", 0.1), ("100.0", 100.0)])
def test_parse_scalar_float_spellings(text, expected):
    v = parse_scalar(text)
    assert type(v) is float and v == expected


@SETTINGS
@given(st.booleans(), st.sampled_from([str, lambda b: str(b).lower(), lambda b: str(b).upper(),
                                       lambda b: f"  {b} "]))
def test_parse_scalar_bool_round_trip(b, fmt):
    v = parse_scalar(fmt(b))
    assert type(v) is bool and v is b


@SETTINGS
@given(missing_raw)
def test_parse_scalar_missing(raw):
    assert is_missing(raw)
    assert parse_scalar(raw) is None


@SETTINGS
@given(plain_text)
def test_parse_scalar_text_stays_text(text):
    v = parse_scalar(text)
    assert v == text.strip() and type(v) is str


# --------------------------------------------------------------------------- infer_param kinds


def _with_missing(draw, values, max_missing=5):
    """Insert a few missing spellings at random places; returns (raw list, missing mask)."""
    n_missing = draw(st.integers(0, max_missing))
    raw, mask = list(values), [False] * len(values)
    for _ in range(n_missing):
        pos = draw(st.integers(0, len(raw)))
        raw.insert(pos, draw(missing_raw))
        mask.insert(pos, True)
    return raw, mask


@st.composite
def int_columns(draw):
    values = draw(st.lists(ints, min_size=1, max_size=40))
    raw, mask = _with_missing(draw, [str(v) for v in values])
    return values, raw, mask


@SETTINGS
@given(int_columns())
def test_infer_int_column(col):
    values, raw, mask = col
    spec, series = infer_param("p", raw)
    assert spec.kind == "int" and spec.numeric
    assert spec.n_missing == sum(mask)
    assert len(series) == len(raw)
    assert list(series.isna()) == mask  # missing stays missing, in place
    present = [x for x, m in zip(series.tolist(), mask, strict=True) if not m]
    assert [int(x) for x in present] == values and all(float(x).is_integer() for x in present)
    if not any(mask):
        assert series.dtype == np.int64
    assert spec.n_unique == len(set(values))
    assert spec.fixed == (len(set(values)) == 1)
    assert [int(v) for v in spec.values] == sorted(set(values))[:50]


@st.composite
def float_columns(draw):
    values = draw(st.lists(finite_floats, min_size=1, max_size=40))
    fmt = draw(st.sampled_from([repr, str]))
    raw, mask = _with_missing(draw, [fmt(v) for v in values])
    return values, raw, mask


@SETTINGS
@given(float_columns())
def test_infer_float_column(col):
    values, raw, mask = col
    spec, series = infer_param("p", raw)
    assert spec.kind == "float"
    assert spec.n_missing == sum(mask)
    assert list(series.isna()) == mask
    present = [x for x, m in zip(series.tolist(), mask, strict=True) if not m]
    assert present == values
    distinct = set(values)  # 0.0 and -0.0 are one value
    assert spec.n_unique == len(distinct)
    assert spec.fixed == (len(distinct) == 1)


@SETTINGS
@given(st.lists(ints, min_size=1, max_size=20), st.lists(finite_floats, min_size=1, max_size=20), st.randoms())
def test_infer_mixed_int_and_float_is_float(int_values, float_values, rnd):
    pairs = [(str(i), float(i)) for i in int_values] + [(repr(f), f) for f in float_values]
    rnd.shuffle(pairs)
    spec, series = infer_param("p", [p[0] for p in pairs])
    assert spec.kind == "float"
    assert series.dtype == np.float64
    assert series.tolist() == [p[1] for p in pairs]


@st.composite
def bool_columns(draw):
    values = draw(st.lists(st.booleans(), min_size=1, max_size=30))
    fmt = draw(st.sampled_from([str, lambda b: str(b).lower()]))
    raw, mask = _with_missing(draw, [fmt(v) for v in values])
    return values, raw, mask


@SETTINGS
@given(bool_columns())
def test_infer_bool_column(col):
    values, raw, mask = col
    spec, series = infer_param("p", raw)
    assert spec.kind == "bool" and not spec.numeric
    assert spec.n_missing == sum(mask)
    assert list(series.isna()) == mask
    assert [bool(x) for x, m in zip(series.tolist(), mask, strict=True) if not m] == values
    assert spec.values == sorted(set(values))
    assert spec.fixed == (len(set(values)) == 1)


@SETTINGS
@given(st.lists(st.one_of(ints.map(str), finite_floats.map(repr), st.booleans().map(str)), max_size=20),
       st.lists(plain_text, min_size=1, max_size=5), st.randoms())
def test_infer_any_text_makes_categorical(numbers, texts, rnd):
    raw = numbers + texts
    rnd.shuffle(raw)
    raw, mask = raw + ["None", ""], [False] * len(raw) + [True, True]
    spec, series = infer_param("p", raw)
    assert spec.kind == "categorical" and not spec.numeric and not spec.log_scale
    assert spec.n_missing == 2
    assert list(series.isna()) == mask
    assert series.tolist()[:-2] == [r.strip() for r in raw[:-2]]  # the stored text, not a re-formatting
    assert spec.values == sorted({r.strip() for r in raw[:-2]})[:50]


def test_infer_all_missing():
    spec, series = infer_param("p", ["None", "", None, "nan"])
    assert spec.n_missing == 4 and spec.n_unique == 0 and spec.fixed
    assert series.isna().all()


@pytest.mark.parametrize("raw, kind, value", [(["64"] * 7, "int", 64), (["0.5"] * 3, "float", 0.5),
                                              (["True", "true"], "bool", True), (["adam"] * 4, "categorical", "adam"),
                                              (["64", "None", "64"], "int", 64)])
def test_constant_column_is_fixed(raw, kind, value):
    spec, _ = infer_param("p", raw)
    assert spec.kind == kind and spec.fixed and spec.n_unique == 1
    assert spec.values == [value]


def test_seed_names_are_marked_as_replicate_seeds():
    assert infer_param("seed", ["1", "2"])[0].seed
    assert infer_param("random_state", ["1", "2"])[0].seed
    assert not infer_param("seed_ratio", ["1", "2"])[0].seed


@pytest.mark.parametrize("big", [2**53 + 1, 2**63, 227474986519385786463470929063488474185])
def test_big_integers_are_not_corrupted(big):
    raw = [str(big), "1", "2"]
    spec, series = infer_param("entropy", raw)
    if spec.kind == "categorical":  # acceptable: kept as the exact text
        assert series.tolist() == raw
    else:
        assert [int(x) for x in series.tolist()] == [big, 1, 2]
        assert big in spec.values


def test_int_values_stay_ints_when_some_are_missing():
    spec, _ = infer_param("depth", ["3", "None", "5"])
    assert spec.kind == "int"
    assert spec.values == [3, 5] and all(type(v) is int for v in spec.values)


# --------------------------------------------------------------------------- log scale


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(50, 300), st.sampled_from([repr, str]))
def test_log_uniform_learning_rates_are_log_scale(seed, n, fmt):
    lr = 10 ** np.random.default_rng(seed).uniform(-5, -1, n)
    spec, _ = infer_param("learning_rate", [fmt(float(v)) for v in lr])
    assert spec.kind == "float" and spec.log_scale


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(20, 300))
def test_uniform_0_1_is_linear(seed, n):
    x = np.random.default_rng(seed).uniform(0, 1, n)
    spec, _ = infer_param("dropout", [repr(float(v)) for v in x])
    assert spec.kind == "float" and not spec.log_scale


@SETTINGS
@given(st.lists(st.sampled_from([16, 32, 64, 128, 256, 512]), min_size=0, max_size=40), st.randoms())
def test_powers_of_two_are_log_scale(extra, rnd):
    values = [16, 32, 64, 128, 256, 512] + extra
    rnd.shuffle(values)
    spec, _ = infer_param("batch_size", [str(v) for v in values])
    assert spec.kind == "int" and spec.log_scale


@SETTINGS
@given(st.lists(st.integers(1, 5), min_size=5, max_size=60))
def test_small_ints_are_linear(values):
    assume(len(set(values)) >= 3)
    spec, _ = infer_param("depth", [str(v) for v in values])
    assert spec.kind == "int" and not spec.log_scale


def test_log_scale_edge_cases():
    assert infer_param("lr", ["1e-05", "1e-04", "1e-03", "None"])[0].log_scale  # powers of ten, missing ignored
    assert not infer_param("x", ["0", "1e-05", "0.1", "1"])[0].log_scale  # zero: cannot be log-scaled
    assert not infer_param("x", ["-1", "-10", "-100"])[0].log_scale
    assert not infer_param("x", ["1e-05", "0.1"])[0].log_scale  # two values say nothing about scale
    assert not infer_param("opt", ["adam", "sgd", "adamw"])[0].log_scale
    spec, series = infer_param("lr", pd.Series(["1e-3", "1e-2", "1e-1"]).tolist())
    assert spec.log_scale and series.tolist() == [1e-3, 1e-2, 1e-1]
