"""The error contract, for every command and option: bad input a user can give (an invalid number, text for
a number, malformed JSON, `key=value` without `=`, a missing folder or file, an `--out` that cannot be
written, conflicting options, an unknown experiment or run id) ends in exactly one line
`mlviz: error: ...`, exit code 2, no traceback, and the store, its artifacts and the inputs byte-identical
(nothing new in the cwd either).

Two tables: `CASES`, written by hand (what each value means to the command), and `generated_cases()`,
made from click's own description of every command (text for every number, an unknown choice, a value
out of range, a missing path, an unknown option, a missing required argument), so a new command or
option is covered the day it is added. `test_every_option_has_a_bad_value` fails when an option has
neither a hand case nor a line in `NO_BAD_VALUE` saying why any value is acceptable.

Each case runs against its own copy of the session's synthetic store (120 runs) with an experiment
`contract` added: a run with binary predictions (`{run}`) and a deleted experiment `gone`.
Cases that fail today are listed in `KNOWN_FAILURES` (strict xfail: the lead removes them as they are
fixed)."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, clone_store, run_cli, tree_digest, write_import_sources

pytestmark = pytest.mark.usefixtures("clean_env")

UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"


@dataclass
class Case:
    id: str
    args: list[str]
    fragments: tuple[str, ...] = ()  # each must be in the error line (case-insensitive)
    env: dict[str, str] = field(default_factory=dict)


def C(id: str, *args: str, frag: str | tuple[str, ...] = (), env: dict | None = None) -> Case:  # noqa: N802
    return Case(id, list(args), (frag,) if isinstance(frag, str) else tuple(frag), env or {})


URI = ("--tracking-uri", "{uri}")
VIS = ("visualize", *URI, "-e", "synthetic-sweep")
BEST = ("best-model", *URI, "--run", "{run}", "--no-heatmaps")
HEAT = ("heatmaps", *URI, "--run", "{model_run}")
SEL = ("select", *URI, "-e", "synthetic-sweep")
SYN = ("synthetic-sweep", *URI)
CMP = ("compare", *URI, "--run", "{run}", "--run", "{bare}")
EMB = ("embed", *URI, "--run", "{model_run}", "--method", "pca")
EXP = ("explore", "--no-browser", *URI)  # every case fails before it would listen on a port

CASES: list[Case] = [
    # ------------------------------------------------------------------ visualize
    C("visualize --top-k 0", *VIS, "--top-k", "0", frag="--top-k"),
    C("visualize --top-k -3", *VIS, "--top-k", "-3", frag="--top-k"),
    C("visualize --n-boot 5", *VIS, "--n-boot", "5", frag="--n-boot"),
    C("visualize --n-boot -1", *VIS, "--n-boot", "-1", frag="--n-boot"),
    C("visualize --seed -1", *VIS, "--seed", "-1", frag="--seed"),
    C("visualize --status unknown", *VIS, "--status", "DONE", frag="DONE"),
    C("visualize unknown experiment", "visualize", *URI, "-e", "no-such-sweep", frag="no-such-sweep"),
    C("visualize unknown metric", *VIS, "--metric", "val_nope", frag="val_nope"),
    C("visualize malformed filter", *VIS, "--filter", "params.x ==== 3"),
    C("visualize unknown parent run", *VIS, "--parent-run", "no-such-parent", frag="no-such-parent"),
    C("visualize unknown stage1 parent", *VIS, "--stage1-parent", "no-such-parent", frag="no-such-parent"),
    C("visualize unknown stage2 parent", *VIS, "--stage2-parent", UNKNOWN_RUN, frag=UNKNOWN_RUN),
    C("visualize --out is a file", *VIS, "--out", "{file}", "--n-boot", "10", frag="{file}"),
    C("visualize --cam-method unknown", *VIS, "--cam-method", "nosuchcam", frag="nosuchcam"),
    C("visualize unreachable server", "visualize", "--tracking-uri", "http://127.0.0.1:9", "-e", "x",
      frag="cannot reach"),
    C("visualize store folder missing", "visualize", "--tracking-uri", "sqlite:///{missing}/mlflow.db", "-e", "x",
      frag="does not exist"),
    C("visualize MLFLOW_RUN_ID unknown", *VIS, "--n-boot", "10", frag="MLFLOW_RUN_ID",
      env={"MLFLOW_RUN_ID": UNKNOWN_RUN}),
    # ------------------------------------------------------------------ best-model
    C("best-model neither --run nor -e", "best-model", *URI, frag="--run"),
    C("best-model --run and -e", *BEST, "-e", "synthetic-sweep", frag=("--run", "--experiment")),
    C("best-model unknown run", "best-model", *URI, "--run", UNKNOWN_RUN, frag=UNKNOWN_RUN),
    C("best-model run without predictions", "best-model", *URI, "--run", "{bare}", "--no-heatmaps", frag="{bare}"),
    C("best-model --columns malformed JSON", *BEST, "--columns", "{bad", frag="--columns"),
    C("best-model --columns not an object", *BEST, "--columns", "[1, 2]", frag="--columns"),
    C("best-model --rename without =", *BEST, "--rename", "prob_header", frag="--rename"),
    C("best-model --rename empty name", *BEST, "--rename", "=score", frag="--rename"),
    C("best-model --rename unknown column", *BEST, "--rename", "nope=score", frag="nope"),
    C("best-model --n-boot 5", *BEST, "--n-boot", "5", frag="--n-boot"),
    C("best-model --n-boot 0", *BEST, "--n-boot", "0", frag="--n-boot"),
    C("best-model --top-k 0", "best-model", *URI, "-e", "synthetic-sweep", "--top-k", "0", frag="--top-k"),
    C("best-model unknown experiment", "best-model", *URI, "-e", "no-such-sweep", frag="no-such-sweep"),
    C("best-model unknown parent run", "best-model", *URI, "-e", "synthetic-sweep", "--parent-run", "nope-parent",
      frag="nope-parent"),
    C("best-model unknown metric", "best-model", *URI, "-e", "synthetic-sweep", "--metric", "val_nope",
      frag="val_nope"),
    C("best-model --predictions missing", *BEST, "--predictions", "eval/nope.csv", frag="eval/nope.csv"),
    C("best-model --label unknown", *BEST, "--label", "nope_label", frag="nope_label"),
    C("best-model --scores unknown", *BEST, "--scores", "p_x,p_y", frag="p_x"),
    C("best-model --score-prefix matches nothing", *BEST, "--score-prefix", "nope_", frag="nope_"),
    C("best-model --prediction unknown", *BEST, "--task", "regression", "--label", "score", "--prediction",
      "nope_pred", frag="nope_pred"),
    C("best-model --positive-class absent", *BEST, "--positive-class", "7", frag="7"),
    C("best-model --group-columns unknown", *BEST, "--group-columns", "nope_group", frag="nope_group"),
    C("best-model --out is a file", *BEST, "--out", "{file}", "--n-boot", "10", frag="{file}"),
    C("best-model --image-root missing", *BEST, "--image-root", "{missing}", "--n-boot", "10", frag="{missing}"),
    C("best-model --image-root is a file", *BEST, "--image-root", "{file}", "--n-boot", "10", frag="notes.txt"),
    # ------------------------------------------------------------------ heatmaps
    C("heatmaps --samples 0", *HEAT, "--samples", "0", frag="--samples"),
    C("heatmaps --samples -2", *HEAT, "--samples", "-2", frag="--samples"),
    C("heatmaps --opacity 1.5", *HEAT, "--opacity", "1.5", frag="--opacity"),
    C("heatmaps --method unknown", *HEAT, "--method", "nosuchcam", frag="nosuchcam"),
    C("heatmaps --target unknown", *HEAT, "--target", "mine", frag="--target"),
    C("heatmaps --target -1", *HEAT, "--target", "-1", frag="target"),
    C("heatmaps --factory without colon", *HEAT, "--factory", "mypkg.models.build", frag="factory"),
    C("heatmaps --faithfulness unknown", *HEAT, "--faithfulness", "gradcam,nosuchmethod", frag="nosuchmethod"),
    C("heatmaps --fallback unknown", *HEAT, "--fallback", "nosuchmethod", frag="nosuchmethod"),
    C("heatmaps --cmap unknown", *HEAT, "--cmap", "nosuchcmap", frag="nosuchcmap"),
    C("heatmaps --seed -1", *HEAT, "--seed", "-1", frag="--seed"),
    C("heatmaps --images is not images", *HEAT, "--images", "{file}", frag="notes.txt"),
    C("heatmaps --layer unknown", *HEAT, "--layer", "features.99", frag="features.99"),
    C("heatmaps run without a model", "heatmaps", *URI, "--run", "{run}", frag="{run}"),
    C("heatmaps --fallback on a run without a model", "heatmaps", *URI, "--run", "{run}", "--fallback", "occlusion",
      frag="{run}"),
    C("heatmaps --target class out of range", *HEAT, "--target", "10", frag="target"),
    C("heatmaps unknown run", "heatmaps", *URI, "--run", UNKNOWN_RUN, frag=UNKNOWN_RUN),
    C("heatmaps --out is a file", *HEAT, "--out", "{file}", frag="{file}"),
    # ------------------------------------------------------------------ synthetic-sweep
    C("synthetic-sweep --runs 0", *SYN, "--runs", "0", frag="--runs"),
    C("synthetic-sweep --runs -5", *SYN, "--runs", "-5", frag="--runs"),
    C("synthetic-sweep --steps -1", *SYN, "--steps", "-1", frag="--steps"),
    C("synthetic-sweep --seed -1", *SYN, "--runs", "2", "--seed", "-1", frag="--seed"),
    C("synthetic-sweep empty experiment name", *SYN, "--runs", "2", "-e", "", frag="experiment name"),
    C("synthetic-sweep into a deleted experiment", *SYN, "--runs", "2", "-e", "gone", frag="gone"),
    C("synthetic-sweep store folder missing", "synthetic-sweep", "--tracking-uri", "sqlite:///{missing}/mlflow.db",
      "--runs", "2", frag="{missing}"),
    C("synthetic-sweep store is not SQLite", "synthetic-sweep", "--tracking-uri", "sqlite:///{file}", "--runs", "2",
      frag="not an MLflow SQLite store"),
    # ------------------------------------------------------------------ demo (each fails before it trains)
    C("demo --seed -1", "demo", "--quick", *URI, "--seed", "-1", frag="--seed"),
    C("demo into a deleted experiment", "demo", "--quick", *URI, "-e", "gone", frag="gone"),
    C("demo store folder missing", "demo", "--quick", "--tracking-uri", "sqlite:///{missing}/mlflow.db",
      frag="{missing}"),
    # ------------------------------------------------------------------ select
    C("select --per-value-k -1", *SEL, "--per-value-k", "-1", frag="--per-value-k"),
    C("select --top-n -2", *SEL, "--top-n", "-2", frag="--top-n"),
    C("select --second-k -1", *SEL, "--second-metric", "val_loss", "--second-k", "-1", frag="--second-k"),
    C("select --diversity -0.1", *SEL, "--diversity", "-0.1", frag="--diversity"),
    C("select --second-metric unknown", *SEL, "--second-metric", "val_nope", frag="val_nope"),
    C("select --metric unknown", *SEL, "--metric", "val_nope", frag="val_nope"),
    C("select --out in a missing folder", *SEL, "--out", "{missing}/picks.csv", frag="{missing}"),
    C("select --out is a folder", *SEL, "--out", "{dir}", frag="{dir}"),
    C("select unknown experiment", "select", *URI, "-e", "no-such-sweep", frag="no-such-sweep"),
    C("select unknown parent run", *SEL, "--parent-run", "no-such-parent", frag="no-such-parent"),
    C("select malformed filter", *SEL, "--filter", "metrics.val_loss <"),
    C("select --tag unreachable server", "select", "--tracking-uri", "http://127.0.0.1:9", "-e", "x", "--tag",
      frag="cannot reach"),
    # ------------------------------------------------------------------ import two-stage
    C("import two-stage folder missing", "import", "two-stage", "{missing}", *URI, frag="{missing}"),
    C("import two-stage folder is a file", "import", "two-stage", "{file}", *URI, frag="{file}"),
    C("import two-stage empty folder", "import", "two-stage", "{dir}", *URI, frag="quick_search_results.csv"),
    C("import two-stage malformed histories JSON", "import", "two-stage", "{bad_json}", *URI,
      frag="training_histories.json"),
    C("import two-stage without combination_id", "import", "two-stage", "{no_cid}", *URI, frag="combination_id"),
    C("import two-stage unreadable CSV", "import", "two-stage", "{garbage_csv}", *URI,
      frag="quick_search_results.csv"),
    C("import two-stage --params unknown", "import", "two-stage", "{two_stage}", *URI, "--params", "nope_param",
      frag="nope_param"),
    C("import two-stage --metrics unknown", "import", "two-stage", "{two_stage}", *URI, "--metrics", "nope_metric",
      frag="nope_metric"),
    C("import two-stage into a deleted experiment", "import", "two-stage", "{two_stage}", *URI, "-e", "gone",
      frag="gone"),
    C("import two-stage store folder missing", "import", "two-stage", "{two_stage}", "--tracking-uri",
      "sqlite:///{missing}/mlflow.db", frag="{missing}"),
    # ------------------------------------------------------------------ import optuna
    C("import optuna storage missing", "import", "optuna", "sqlite:///{missing}/optuna.db", "--study", "tiny", *URI,
      frag="{missing}"),
    C("import optuna storage is not SQLite", "import", "optuna", "sqlite:///{file}", "--study", "tiny", *URI,
      frag="{file}"),
    C("import optuna storage is an MLflow store", "import", "optuna", "sqlite:///{db}", "--study", "tiny", *URI,
      frag="not an Optuna storage"),
    C("import optuna storage not a URL", "import", "optuna", "optuna.db", "--study", "tiny", *URI,
      frag="optuna.db"),
    C("import optuna unknown study", "import", "optuna", "sqlite:///{optuna}", "--study", "nope-study", *URI,
      frag="nope-study"),
    C("import optuna into a deleted experiment", "import", "optuna", "sqlite:///{optuna}", "--study", "tiny", *URI,
      "-e", "gone", frag="gone"),
    C("import optuna empty --metric", "import", "optuna", "sqlite:///{optuna}", "--study", "tiny", *URI,
      "--metric", " ", frag="--metric"),
    # ------------------------------------------------------------------ import epochs
    C("import epochs folder missing", "import", "epochs", "{missing}", *URI, frag="{missing}"),
    C("import epochs empty folder", "import", "epochs", "{dir}", *URI, frag="metrics_epoch.csv"),
    C("import epochs without epoch column", "import", "epochs", "{no_epoch}", *URI, frag="epoch"),
    C("import epochs without a metric", "import", "epochs", "{only_epoch}", *URI, frag="metric"),
    C("import epochs unreadable predictions", "import", "epochs", "{garbage_preds}", *URI,
      frag="val_predictions.csv"),
    C("import epochs into a deleted experiment", "import", "epochs", "{epochs}", *URI, "-e", "gone", frag="gone"),
    C("import epochs empty --name", "import", "epochs", "{epochs}", *URI, "--name", " ", frag="--name"),
    # ------------------------------------------------------------------ compare
    C("compare one run", "compare", *URI, "--run", "{run}", frag="two"),
    C("compare nothing", "compare", *URI, frag="two"),
    C("compare unknown run", "compare", *URI, "--run", "{run}", "--run", UNKNOWN_RUN, frag=UNKNOWN_RUN),
    C("compare --n-boot -5", *CMP, "--n-boot", "-5", frag="--n-boot"),
    C("compare --n-boot text", *CMP, "--n-boot", "many", frag="--n-boot"),
    C("compare --seed text", *CMP, "--seed", "x", frag="--seed"),
    C("compare --run with --parent-run", *CMP, "--parent-run", "stage1", frag="--parent-run"),
    C("compare --run with --filter", *CMP, "--filter", "params.x = '1'", frag="--filter"),
    C("compare --reference unknown", *CMP, "--reference", "nope-ref", frag="nope-ref"),
    C("compare --predictions missing", *CMP, "--predictions", "eval/nope.csv", frag="eval/nope.csv"),
    C("compare unknown experiment", "compare", *URI, "-e", "synthetic-sweep", "-e", "no-such-sweep",
      frag="no-such-sweep"),
    C("compare --filter count mismatch", "compare", *URI, "-e", "synthetic-sweep", "--parent-run", "stage1",
      "--parent-run", "stage1", "--filter", "params.depth = '2'", "--filter", "params.depth = '3'", "--filter",
      "params.depth = '4'", frag="once per sweep"),
    C("compare --metric unknown", "compare", *URI, "-e", "synthetic-sweep", "-e", "synthetic-sweep",
      "--filter", "params.optimizer = 'adam'", "--filter", "params.optimizer = 'sgd'", "--metric", "val_nope",
      frag="val_nope"),
    C("compare --out is a file", *CMP, "--out", "{file}", frag="{file}"),
    # ------------------------------------------------------------------ embed
    C("embed nothing to map", "embed", *URI, frag="--run"),
    C("embed --method unknown", *EMB, "--method", "nosuchproj", frag="--method"),
    C("embed --n-neighbors 1", *EMB, "--n-neighbors", "1", frag="--n-neighbors"),
    C("embed --seed -1", *EMB, "--seed", "-1", frag="--seed"),
    C("embed --n-epochs 0", *EMB, "--n-epochs", "0", frag="--n-epochs"),
    C("embed --features missing", "embed", "--features", "{missing}/f.npy", "--out", "{out}", frag="{missing}"),
    C("embed --features is not .npy", "embed", "--features", "{file}", "--out", "{out}", frag="notes.txt"),
    C("embed --features with --layer", "embed", "--features", "{file}", "--layer", "features.4", "--out", "{out}",
      frag=("--features", "--layer")),
    C("embed --metadata alone", "embed", "--metadata", "{file}", "--out", "{out}", frag="--metadata"),
    C("embed --metadata missing", *EMB, "--metadata", "{missing}/meta.csv", frag="{missing}"),
    C("embed --layer unknown", *EMB, "--layer", "features.99", frag="features.99"),
    C("embed --color-by unknown column", *EMB, "--color-by", "nope_col", frag="nope_col"),
    C("embed run without embeddings or model", "embed", *URI, "--run", "{run}", frag="{run}"),
    C("embed unknown run", "embed", *URI, "--run", UNKNOWN_RUN, frag=UNKNOWN_RUN),
    C("embed --out is a file", *EMB, "--out", "{file}", frag="{file}"),
    # ------------------------------------------------------------------ explore
    C("explore neither --run nor --cache-dir", *EXP, frag="--run"),
    C("explore --run and --cache-dir", *EXP, "--run", "{run}", "--cache-dir", "{dir}", frag="not both"),
    C("explore --port too large", *EXP, "--run", UNKNOWN_RUN, "--port", "99999", frag="--port"),
    C("explore --port text", *EXP, "--run", UNKNOWN_RUN, "--port", "http", frag="--port"),
    C("explore --cache-dir missing", *EXP, "--cache-dir", "{missing}", frag="{missing}"),
    C("explore --cache-dir empty", *EXP, "--cache-dir", "{dir}", frag="{dir}"),
    C("explore run without an embedding", *EXP, "--run", "{run}", frag="mlviz embed"),
    C("explore unknown run", *EXP, "--run", UNKNOWN_RUN, frag=UNKNOWN_RUN),
    C("explore --image-dir missing", *EXP, "--run", "{run}", "--image-dir", "{missing}", frag="--image-dir"),
    C("explore --image-dir with --image-root", *EXP, "--run", "{run}", "--image-dir", "{dir}", "--image-root",
      "http://example.org/img", frag="not both"),
    C("explore --image-root not a URL", *EXP, "--run", "{run}", "--image-root", "img", frag="--image-root"),
    C("explore --mis-csv missing", *EXP, "--run", "{run}", "--mis-csv", "{missing}/mis.csv", frag="--mis-csv"),
    C("explore --correct-csv missing", *EXP, "--run", "{run}", "--correct-csv", "{missing}/ok.csv",
      frag="--correct-csv"),
    C("explore --coords-file not in the run", *EXP, "--run", "{run}", "--coords-file", "nope/coords.npy",
      frag="nope/coords.npy"),
    C("explore --metadata-file not in the cache", *EXP, "--cache-dir", "{cache}", "--metadata-file", "nope.csv",
      frag="nope.csv"),
    C("explore --coords-file not in the cache", *EXP, "--cache-dir", "{cache}", "--coords-file", "nope.npy",
      frag="nope.npy"),
    C("explore --host with a bad port", *EXP, "--run", UNKNOWN_RUN, "--host", "0.0.0.0", "--port", "-1",
      frag="--port"),
    C("best-model --group-id not a column", *BEST, "--group-id", "nope_patient", frag="nope_patient"),
    C("compare --group-id not a column", *CMP, "--group-id", "nope_patient", frag="nope_patient"),
    C("compare --group-id with sweeps", "compare", *URI, "-e", "synthetic-sweep", "-e", "synthetic-sweep",
      "--group-id", "patient_id", frag="--group-id"),
]

# Options where every value is acceptable (free text, a name to look for), or whose bad values are covered
# through another option's case; each with why.
NO_BAD_VALUE: dict[tuple[str, str], str] = {
    ("visualize", "--tracking-uri"): "covered: unreachable server, missing store folder",
    ("visualize", "--experiment"): "covered: unknown experiment",
    ("visualize", "--filter"): "covered: malformed filter",
    ("visualize", "--metric"): "covered: unknown metric",
    ("best-model", "--tracking-uri"): "same Store as visualize",
    ("best-model", "--experiment"): "covered: unknown experiment",
    ("best-model", "--task"): "a Choice: generated case",
    ("heatmaps", "--tracking-uri"): "same Store as visualize",
    ("heatmaps", "--select"): "a Choice: generated case",
    ("synthetic-sweep", "--tracking-uri"): "covered: missing folder, not SQLite",
    ("demo", "--tracking-uri"): "covered: missing folder",
    ("demo", "--task"): "a Choice: generated case",
    ("select", "--tracking-uri"): "covered: unreachable server",
    ("select", "--experiment"): "covered: unknown experiment",
    ("import two-stage", "--tracking-uri"): "covered: missing store folder",
    ("import optuna", "--tracking-uri"): "same writer as import two-stage",
    ("import epochs", "--tracking-uri"): "same writer as import two-stage",
    ("embed", "--tracking-uri"): "same Store as visualize",
    ("explore", "--tracking-uri"): "same Store as visualize",
    ("compare", "--tracking-uri"): "same Store as visualize",
    ("compare", "--experiment"): "covered: unknown experiment",
    ("explore", "--color-by"): "checked against the data only: a case that got past the check would start "
                               "the server and hang the suite",
    ("explore", "--hover"): "as --color-by",
    ("visualize", "--group-id"): "checked when the best model's predictions are read, as best-model --group-id "
                                 "(the synthetic sweep's runs log no predictions)",
}

# Base invocations for the generated cases (realistic company for the one bad value).
BASE: dict[str, tuple[str, ...]] = {
    "visualize": VIS, "best-model": BEST, "heatmaps": HEAT, "select": SEL, "synthetic-sweep": SYN,
    "demo": ("demo", "--quick", *URI), "import two-stage": ("import", "two-stage", "{two_stage}", *URI),
    "import optuna": ("import", "optuna", "sqlite:///{optuna}", "--study", "tiny", *URI),
    "import epochs": ("import", "epochs", "{epochs}", *URI), "compare": CMP, "embed": EMB, "explore": EXP,
}

# Case ids (fnmatch patterns) that fail today, with what happens; strict: a fixed one turns the run red
# until its line is removed here.
KNOWN_FAILURES: dict[str, str] = {}  # every case passes; a new failure goes here with what happens


# --------------------------------------------------------------------------- cases made from click itself


def leaf_commands(group: click.Group | None = None, path: tuple[str, ...] = ()):
    from mlviz.cli import main

    group = group or main
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from leaf_commands(cmd, (*path, name))
        else:
            yield " ".join((*path, name)), cmd


def _long_name(param: click.Parameter) -> str:
    return max(param.opts, key=len)


def generated_cases() -> list[Case]:
    """Type-level bad values from every command's click parameters: parse errors, never the command body."""
    cases = [C("mlviz --no-such-option", "--no-such-option", frag="no-such-option"),
             C("mlviz no-such-command", "no-such-command", frag="no-such-command")]
    for name, cmd in leaf_commands():
        words = name.split()
        base = list(BASE.get(name, words))
        cases.append(C(f"{name} --no-such-option", *base, "--no-such-option", frag="no-such-option"))
        if any(p.required for p in cmd.params):
            cases.append(C(f"{name} without its required input", *words, frag="missing"))
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.is_flag or p.count:
                continue
            opt, t = _long_name(p), p.type
            bad: list[tuple[str, str]] = []
            if isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):
                bad.append(("text", "abc"))
            if isinstance(t, click.types._NumberRangeBase):
                if t.min is not None:
                    bad.append(("below range", str(t.min - 1)))
                if t.max is not None:
                    bad.append(("above range", str(t.max + 1)))
            if isinstance(t, click.Choice):
                bad.append(("unknown choice", "no-such-choice"))
            if isinstance(t, click.types.BoolParamType):
                bad.append(("not a bool", "maybe"))
            if isinstance(t, click.Path) and t.exists:
                bad.append(("missing path", "{missing}/nothing"))
            for what, value in bad:
                cases.append(C(f"{name} {opt} {what}", *base, opt, value, frag=opt))
    return cases


ALL_CASES = CASES + generated_cases()


def _params():
    out = []
    for case in ALL_CASES:
        marks = [pytest.mark.xfail(strict=True, reason=why)
                 for pattern, why in KNOWN_FAILURES.items() if fnmatch.fnmatchcase(case.id, pattern)][:1]
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


# --------------------------------------------------------------------------- the store and the inputs


@pytest.fixture(scope="module")
def contract_template(synthetic_store, tmp_path_factory):
    """The synthetic store (relocated copy) plus experiment `contract` (a run that logged binary
    predictions, a run without any) and a deleted experiment `gone`; copied again for every case."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    root = tmp_path_factory.mktemp("contract-template")
    store = clone_store(synthetic_store, root / "store")
    client = MlflowClient(tracking_uri=store["uri"])
    exp = client.create_experiment("contract", artifact_location=str(store["root"] / "contract-artifacts"))
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 80)
    score = np.clip(0.3 * label + rng.uniform(0, 0.7, 80), 0, 1)
    frame = pd.DataFrame({"sample_id": np.arange(80), "label": label, "score": score,
                          "site": rng.choice(["a", "b"], 80)})
    local = root / "src" / "val_predictions.csv"
    local.parent.mkdir()
    frame.to_csv(local, index=False)
    run = client.create_run(exp, run_name="with-predictions").info.run_id
    client.log_artifact(run, str(local), "predictions")
    client.log_batch(run, metrics=[Metric("val_auc", 0.8, 0, 0)])
    client.set_terminated(run, "FINISHED")
    bare = client.create_run(exp, run_name="no-predictions").info.run_id
    client.log_batch(bare, metrics=[Metric("val_auc", 0.7, 0, 0)])
    client.set_terminated(bare, "FINISHED")
    gone = client.create_experiment("gone", artifact_location=str(store["root"] / "gone-artifacts"))
    client.delete_experiment(gone)
    model_run = _log_model_run(client, exp, root / "model-src")

    sources = write_import_sources(root / "sources")
    bad = root / "bad-sources"
    folders = {name: bad / name for name in ("bad_json", "no_cid", "garbage_csv", "no_epoch", "only_epoch",
                                             "garbage_preds")}
    for name in ("bad_json", "no_cid", "garbage_csv"):
        folders[name].mkdir(parents=True)
        for f in sources["two_stage"].iterdir():
            (folders[name] / f.name).write_bytes(f.read_bytes())
    (folders["bad_json"] / "training_histories.json").write_text('{"7": {"val_loss": [0.9, 0.6')
    quick = pd.read_csv(sources["two_stage"] / "quick_search_results.csv")
    quick.drop(columns=["combination_id"]).to_csv(folders["no_cid"] / "quick_search_results.csv", index=False)
    (folders["garbage_csv"] / "quick_search_results.csv").write_bytes(b"\xff\xfe\x00\x81combination_id\x00\n\x9c")
    for name in ("no_epoch", "only_epoch", "garbage_preds"):
        folders[name].mkdir(parents=True)
    pd.DataFrame({"step": [1, 2], "val_loss": [0.5, 0.4]}).to_csv(folders["no_epoch"] / "metrics_epoch.csv",
                                                                  index=False)
    pd.DataFrame({"epoch": [1, 2]}).to_csv(folders["only_epoch"] / "metrics_epoch.csv", index=False)
    (folders["garbage_preds"] / "metrics_epoch.csv").write_bytes(
        (sources["epochs"] / "metrics_epoch.csv").read_bytes())
    (folders["garbage_preds"] / "val_predictions.csv").write_bytes(b"\xff\xfe\x00\x81label\x00\n\x9c")
    cache = bad / "cache"  # a seed-003 style cache folder with coordinates and no metadata
    cache.mkdir()
    np.save(cache / "vis_umap_coords.npy", rng.normal(size=(20, 2)))
    folders["cache"] = cache
    return {"store": store, "run": run, "bare": bare, "model_run": model_run, "sources": {**sources, **folders},
            "root": root}


def _log_model_run(client, experiment_id: str, scratch: Path) -> str:
    """A run laid out as the demo logs a stage-2 run (predictions, validation images, state dict with
    model_config.json) plus penultimate-layer embeddings, for a small CNN trained one epoch on the digits."""
    torch = pytest.importorskip("torch")
    from mlviz.demo.data import load_task
    from mlviz.demo.sweep import _log_predictions
    from mlviz.demo.train import embeddings, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = load_task("multiclass")
        params = {"learning_rate": 3e-3, "weight_decay": 1e-4, "dropout": 0.0, "channels": 8, "depth": 2,
                  "optimizer": "adam", "activation": "relu", "augment": False, "batch_size": 64}
        result = train(params, task, 1, seed=0)
        run_id = client.create_run(experiment_id, run_name="with-model").info.run_id
        _log_predictions(client, run_id, task, result)
        scratch.mkdir(parents=True)
        np.save(scratch / "penultimate.npy", embeddings(result.model, task.x_val))
        client.log_artifact(run_id, str(scratch / "penultimate.npy"), "embeddings")
        client.set_terminated(run_id, "FINISHED")
    finally:
        torch.set_num_threads(threads)
    return run_id


def fill(text: str, values: dict[str, str]) -> str:
    """Replace {name} placeholders that name a value; other braces (malformed JSON) stay as they are."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def world(contract_template, tmp_path, monkeypatch):
    """This case's own copy of the store, the placeholders of the case table, and an empty cwd."""
    store = clone_store(contract_template["store"], tmp_path / "store")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "empty-folder").mkdir()
    (scratch / "notes.txt").write_text("not a store, not an image, not JSON\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    values = {"uri": store["uri"], "db": str(store["db"]), "run": contract_template["run"],
              "model_run": contract_template["model_run"],
              "bare": contract_template["bare"], "file": str(scratch / "notes.txt"),
              "dir": str(scratch / "empty-folder"), "missing": str(tmp_path / "no" / "such"),
              "out": str(tmp_path / "out"),
              **{k: str(v) for k, v in contract_template["sources"].items()}}
    return {"store": store, "values": values, "cwd": cwd, "tmp": tmp_path,
            "watched": [store["root"], contract_template["root"] / "sources", contract_template["root"] / "bad-sources",
                        scratch]}


def _digest(world) -> dict:
    return {str(folder): tree_digest(folder) for folder in world["watched"]}


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case: Case, world):
    values = world["values"]
    args = [fill(a, values) for a in case.args]
    fragments = [fill(f, values) for f in case.fragments]
    before = _digest(world)
    result = run_cli(*args, env=case.env or None)
    assert_one_line_error(result, *fragments)
    assert _digest(world) == before, "the store, its artifacts or the inputs changed"
    assert not (world["tmp"] / "no").exists(), "a missing folder was created"
    assert not (world["tmp"] / "out").exists(), "an output folder was made for a command that failed"
    assert sorted(p.name for p in world["cwd"].iterdir()) == [], "files were created in the cwd"


def test_every_option_has_a_bad_value():
    """Every option of every command has a hand case, a generated one, or a reason in NO_BAD_VALUE."""
    generated = {c.id for c in generated_cases()}
    used = {(name, arg) for case in CASES for name, _ in leaf_commands()
            if case.args[: len(name.split())] == name.split() for arg in case.args}
    missing = []
    for name, cmd in leaf_commands():
        if name not in BASE:
            missing.append(f"{name}: no BASE invocation and no hand cases")
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.is_flag:
                continue
            opt = _long_name(p)
            if any((name, o) in used for o in p.opts) or (name, opt) in NO_BAD_VALUE:
                continue
            if any(cid.startswith(f"{name} {opt} ") for cid in generated) and not isinstance(
                    p.type, (click.types.IntParamType, click.types.FloatParamType)):
                continue  # a Choice/Path/Bool: the generated case is the bad value
            missing.append(f"{name} {opt}")
    assert not missing, "options without a bad-value case: " + ", ".join(missing)


def test_case_table_is_large_and_ids_unique():
    ids = [c.id for c in ALL_CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    assert len(CASES) >= 140 and len(ALL_CASES) >= 180, (len(CASES), len(ALL_CASES))
    stale = [p for p in KNOWN_FAILURES if not any(fnmatch.fnmatchcase(i, p) for i in ids)]
    assert not stale, f"KNOWN_FAILURES entries that match no case: {stale}"
