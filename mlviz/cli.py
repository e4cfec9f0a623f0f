"""Command line. Only click is imported at the top so `mlviz --help` starts fast; each command
imports what it needs. Errors a user can fix print one line and exit with code 2."""

from __future__ import annotations

import sys

import click

EXIT_USAGE = 2


def _fail(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "invalid input"
    click.echo(f"mlviz: error: {first}", err=True)
    sys.exit(EXIT_USAGE)


class _Group(click.Group):
    """Turns mlviz/MLflow errors and bad options into one line and exit code 2 instead of a traceback or
    click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            _fail(exc.format_message())
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary where errors become messages
            from mlviz.errors import MlvizError

            debug = ctx.params.get("debug") or (ctx.obj or {}).get("debug")
            if debug:
                raise
            name = type(exc).__name__
            if isinstance(exc, MlvizError):
                _fail(str(exc))
            if name == "MlflowException" or name.endswith("MlflowException"):
                _fail(str(getattr(exc, "message", exc)) or name)
            from mlviz.errors import disk_error

            full = disk_error(exc, "writing files")  # a full disk met outside the store layer is still one line
            if full is not None:
                _fail(str(full))
            click.echo(f"mlviz: internal error: {name}: {exc} (run with --debug for the traceback)", err=True)
            sys.exit(1)


def _split(value: str | None) -> list[str]:
    """A comma-separated option as its non-empty, stripped items."""
    return [c.strip() for c in (value or "").split(",") if c.strip()]


def _uri_option(help: str | None = None):
    return click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
                        help=help)


_WRITE_URI = "Store to write to (default sqlite:///mlflow.db; created if absent)."


def _require(ok: bool, message: str) -> None:
    """An option value the user must fix: one line, exit code 2."""
    if not ok:
        from mlviz.errors import MlvizError

        raise MlvizError(message)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="mlviz")
@click.pass_context
def main(ctx, debug):
    """Figures for MLflow sweeps and their best models, logged back to MLflow.

    \b
    Typical use:
      mlviz visualize --experiment my-sweep --metric val_loss
      mlflow ui --backend-store-uri sqlite:///mlflow.db
    """
    ctx.obj = {"debug": debug}


RUN_STATUSES = ("FINISHED", "RUNNING", "SCHEDULED", "FAILED", "KILLED")


def _stage_parents(stage1: str | None, stage2: str | None) -> dict[int, str]:
    return {k: v for k, v in ((1, stage1), (2, stage2)) if v}


@main.command()
@_uri_option("Any URI MLflow accepts: sqlite:///mlflow.db (default), ./mlruns, http(s)://host:port.")
@click.option("--experiment", "-e", default=None, help="Experiment name or id (guessed when the store has one).")
@click.option("--parent-run", default=None, help="Analyse all runs nested under this run (id or name), any depth.")
@click.option("--filter", "filter_string", default="", help="MLflow search filter, e.g. \"params.optimizer = 'adam'\".")
@click.option("--status", "statuses", multiple=True, default=("FINISHED",), show_default=True,
              help="Run statuses to include (repeatable).")
@click.option("--metric", "-m", default=None, help="Objective metric (default: a validation AUC/accuracy/loss).")
@click.option("--mode", type=click.Choice(["max", "min", ""]), default=None,
              help="Direction of the objective (default: min for loss/error-like names, else max).")
@click.option("--final", type=click.Choice(["last", "best"]), default="last", show_default=True,
              help="Each metric's last logged value, or the best of its history.")
@click.option("--stage1-parent", default=None, help="Parent run (id or name) of the stage-1 runs.")
@click.option("--stage2-parent", default=None, help="Parent run (id or name) of the stage-2 runs.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write the figures to this folder instead of logging them to MLflow.")
@click.option("--top-k", default=10, show_default=True, help="Runs in the top-k comparison.")
@click.option("--n-boot", default=500, show_default=True, help="Bootstrap resamples for intervals.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed for bootstrap resampling.")
@click.option("--force", is_flag=True, help="Redo the analysis even when nothing changed.")
@click.option("--force-flag", type=bool, default=False, hidden=True, help="--force as a value (for MLproject).")
@click.option("--heatmaps/--no-heatmaps", default=True, show_default=True,
              help="Attribution heatmaps for the best run when it logged a model (needs the attribution extra).")
@click.option("--cam-method", default="gradcam", show_default=True, help="CAM method of those heatmaps.")
@click.option("--embedding/--no-embedding", default=True, show_default=True,
              help="A 2-D map of the best run's embeddings (or its model's features), with its quality.")
@click.option("--group-id", default=None, metavar="COLUMN",
              help="Best model's predictions: the column holding a patient/subject/video id when several rows "
                   "belong to one; intervals resample whole groups (default: detected; 'none': rows).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def visualize(tracking_uri, experiment, parent_run, filter_string, statuses, metric, mode, final, stage1_parent,
              stage2_parent, out, top_k, n_boot, seed, force, force_flag, heatmaps, cam_method, embedding, group_id,
              quiet):
    """Analyse a sweep and log every figure to MLflow (or write them to --out)."""
    from mlviz.attribution.result import METHODS
    from mlviz.sections.sweep import RunSelection, visualize_sweep

    _require(top_k >= 1, f"--top-k must be at least 1, got {top_k}")
    _require(n_boot >= 10, f"--n-boot must be at least 10, got {n_boot}")
    bad = [s for s in statuses if s.upper() not in RUN_STATUSES]
    _require(not bad, f"--status {bad[0] if bad else ''} is not a run status; use {', '.join(RUN_STATUSES)}")
    _require(cam_method in METHODS, f"--cam-method must be one of {', '.join(METHODS)}, got '{cam_method}'")
    selection = RunSelection(
        tracking_uri=tracking_uri or None, experiment=experiment or None, parent_run=parent_run or None,
        filter_string=filter_string or "", statuses=tuple(s.upper() for s in statuses), metric=metric or None,
        mode=mode or None, final=final, stage_parents=_stage_parents(stage1_parent or None, stage2_parent or None),
    )
    cams = {"method": cam_method} if heatmaps else False
    options = {"top_k": top_k, "n_boot": n_boot, "seed": seed, "heatmaps": cams, "embedding": embedding}
    if group_id:  # MLproject passes "" for "not given"
        options["group_id"] = group_id.strip()
    visualize_sweep(selection, out=out or None, options=options, force=force or force_flag,
                    progress=not quiet and sys.stderr.isatty(), echo=click.echo)


def _column_map(task, label, scores, score_prefix, prediction, positive_class, group_columns, rename, columns_json):
    import json

    try:
        cmap = json.loads(columns_json) if columns_json else {}
    except ValueError as exc:
        _require(False, f"--columns is not valid JSON ({exc})")
    _require(isinstance(cmap, dict), "--columns must be a JSON object, e.g. '{\"label\": \"y\"}'")
    for key, value in (("task", task), ("label", label), ("score_prefix", score_prefix),
                       ("prediction", prediction), ("positive_class", positive_class)):
        if value:
            cmap[key] = value
    if scores:
        cmap["scores"] = _split(scores)
    if group_columns:
        cmap["group_columns"] = _split(group_columns)
    if rename:
        pairs = _split(rename)
        bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0] or not p.split("=", 1)[1]]
        _require(not bad, f"--rename takes OLD=NEW pairs separated by commas, got '{bad[0] if bad else ''}'")
        cmap["rename"] = dict(pair.split("=", 1) for pair in pairs)
    return cmap or None


@main.command("best-model")
@_uri_option()
@click.option("--run", "run_id", default=None, help="The run whose predictions to diagnose.")
@click.option("--experiment", "-e", default=None, help="Or: the best run(s) of this experiment's sweep.")
@click.option("--parent-run", default=None, help="With --experiment: only runs nested under this run.")
@click.option("--metric", "-m", default=None, help="With --experiment: the objective that ranks runs.")
@click.option("--mode", type=click.Choice(["max", "min", ""]), default=None)
@click.option("--top-k", default=1, show_default=True, help="With --experiment: diagnose the k best runs.")
@click.option("--predictions", default=None, help="Artifact path of the predictions CSV/Parquet "
              "(default: predictions/val_predictions.csv or any *predictions* file).")
@click.option("--task", type=click.Choice(["binary", "multiclass", "multioutput", "regression"]), default=None)
@click.option("--label", default=None, help="Label column (regression: the true value).")
@click.option("--scores", default=None, help="Comma-separated score/probability columns, in class order.")
@click.option("--score-prefix", default=None, help="Score columns are those starting with this prefix.")
@click.option("--prediction", default=None, help="Regression: the predicted-value column.")
@click.option("--positive-class", default=None, help="Binary: the label value that is positive.")
@click.option("--group-columns", default=None, help="Comma-separated columns to slice metrics by.")
@click.option("--group-id", default=None, metavar="COLUMN",
              help="The column holding a patient/subject/video id when several rows belong to one: intervals "
                   "resample whole groups, since resampling rows makes them too narrow (default: detected when "
                   "such an id repeats; 'none': resample rows).")
@click.option("--rename", default=None, help="Columns to rename first, e.g. 'prob_header=score'.")
@click.option("--columns", "columns_json", default=None, help="The whole column map as JSON.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Write to a folder instead of logging.")
@click.option("--n-boot", default=1000, show_default=True, help="Bootstrap resamples for intervals.")
@click.option("--heatmaps/--no-heatmaps", default=True, show_default=True,
              help="Also the heatmaps/ section when the run logged a model (needs the attribution extra).")
@click.option("--image-root", default=None, help="The only folder from which local images named by the "
              "predictions are read (relative paths resolve under it); otherwise only the run's artifacts.")
def best_model_command(tracking_uri, run_id, experiment, parent_run, metric, mode, top_k, predictions, task, label,
                       scores, score_prefix, prediction, positive_class, group_columns, group_id, rename, columns_json,
                       out, n_boot, heatmaps, image_root):
    """Diagnostics of a model's predictions (ROC, PR, calibration, slices, ...), logged into its own run."""
    from mlviz.sections.model import best_model
    from mlviz.store.read import Store

    _require(top_k >= 1, f"--top-k must be at least 1, got {top_k}")
    _require(n_boot >= 10, f"--n-boot must be at least 10, got {n_boot}")
    _require(not (run_id and experiment), "pass --run RUN_ID or --experiment (a sweep's best runs), not both")
    cmap = _column_map(task, label, scores, score_prefix, prediction, positive_class, group_columns, rename,
                       columns_json)
    _require(bool(run_id or experiment),
             "pass --run RUN_ID, or --experiment (with --top-k) to diagnose a sweep's best runs")
    with Store(tracking_uri) as store:
        if run_id:
            run_ids = [run_id]
        else:
            from mlviz.sections.sweep import RunSelection, read_sweep

            sweep, _ = read_sweep(store, RunSelection(tracking_uri=tracking_uri, experiment=experiment,
                                                   parent_run=parent_run or None, metric=metric or None,
                                                   mode=mode or None))
            stage = 2 if (sweep.runs["stage"] == 2).any() else 1
            run_ids = sweep.stage(stage).best(top_k)["run_id"].tolist()
        for i, rid in enumerate(run_ids):
            target = None if out is None else (out if len(run_ids) == 1 else f"{out}/{i + 1:02d}-{rid[:8]}")
            best_model(rid, store=store, out=target, predictions=predictions, column_map=cmap,
                       options={"n_boot": n_boot, "group_id": (group_id or "").strip() or None}, echo=click.echo,
                       heatmaps={"fallback": "occlusion"} if heatmaps else None, image_root=image_root or None)


@main.command()
@_uri_option()
@click.option("--run", "run_id", required=True, help="The run whose model to explain.")
@click.option("--method", default="gradcam", show_default=True,
              help="gradcam, gradcam++, hirescam, xgradcam, layercam, eigencam, eigengradcam, scorecam, "
                   "ablationcam; or (not CAMs) occlusion, input_gradients, attention_rollout.")
@click.option("--layer", "target_layer", default=None, help="Target layer, e.g. backbone.layer4 (default: found).")
@click.option("--target", "targets", default="predicted", show_default=True,
              help="Whose evidence: predicted, true, or a class index.")
@click.option("--samples", "n", default=8, show_default=True, help="How many images.")
@click.option("--select", default="balanced", show_default=True,
              type=click.Choice(["balanced", "random", "correct", "misclassified", "first", "all"]),
              help="Which images: half correct and half misclassified, at random, ...")
@click.option("--images", default=None, type=click.Path(exists=True),
              help="A folder of PNG/JPG images (class sub-folders as labels) or an .npz, instead of the run's.")
@click.option("--factory", default=None, help="module:function that builds the model for a bare state dict.")
@click.option("--faithfulness", "faith", default=None,
              help="Comma-separated methods to score for faithfulness (default: the method drawn).")
@click.option("--fallback", default=None,
              help="Draw this method (e.g. occlusion, labelled as what it is) when the CAM cannot be computed.")
@click.option("--opacity", default=0.6, show_default=True, type=click.FloatRange(0, 1))
@click.option("--cmap", default="mlviz_heat", show_default=True,
              help="Colour map: mlviz_heat (purple→blue→green→yellow→red) or any matplotlib name.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Write to a folder instead of logging.")
def heatmaps(tracking_uri, run_id, method, target_layer, targets, n, select, images, factory, faith, fallback,
             opacity, cmap, seed, out):
    """Attribution heatmaps (Grad-CAM family) of a run's PyTorch model, logged into that run."""
    import matplotlib

    from mlviz.attribution.result import METHODS
    from mlviz.errors import MlvizError
    from mlviz.sections.heatmaps import run_heatmaps

    _require(n >= 1, f"--samples must be at least 1, got {n}")
    _require(not fallback or fallback in METHODS, f"--fallback must be one of {', '.join(METHODS)}, got '{fallback}'")
    _require(cmap == "mlviz_heat" or cmap in matplotlib.colormaps,
             f"--cmap '{cmap}' is not a colour map (mlviz_heat, or a matplotlib name such as viridis)")
    target = int(targets) if targets.lstrip("-").isdigit() else targets
    _require(isinstance(target, int) or target in ("predicted", "true"),
             f"--target must be predicted, true or a class index, got '{targets}'")
    options = {"method": method, "target_layer": target_layer or None, "targets": target, "n": n, "select": select,
               "images": images, "factory": factory, "opacity": opacity, "cmap": cmap, "seed": seed,
               "faithfulness_methods": [m.strip() for m in faith.split(",") if m.strip()] if faith else None}
    fallback = fallback or None
    try:
        run_heatmaps(run_id, tracking_uri or None, out=out, options=options, echo=click.echo)
    except MlvizError as exc:
        if not fallback:
            raise
        try:  # the fallback can help when the CAM cannot be computed, not when there is no model at all
            run_heatmaps(run_id, tracking_uri or None, out=out, options={**options, "method": fallback,
                                                                "faithfulness_methods": None}, echo=click.echo)
        except MlvizError:
            raise exc from None
        click.echo(f"  note: {method} could not be drawn ({exc}); drew {fallback} instead, labelled as such")


@main.command("synthetic-sweep")
@_uri_option(_WRITE_URI)
@click.option("--experiment", "-e", default="synthetic-sweep", show_default=True)
@click.option("--runs", "n_runs", default=200, show_default=True, help="Number of runs.")
@click.option("--steps", "n_steps", default=10, show_default=True, help="Metric history length per run.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
def synthetic_sweep(tracking_uri, experiment, n_runs, n_steps, seed):
    """Log a generated sweep with known structure (a strong, a weak and a null parameter)."""
    from mlviz.demo.synthetic import log_synthetic_sweep
    from mlviz.store.read import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    _require(n_runs >= 1, f"--runs must be at least 1, got {n_runs}")
    _require(n_steps >= 1, f"--steps must be at least 1, got {n_steps}")
    exp_id = log_synthetic_sweep(uri, experiment, n_runs=n_runs, n_steps=n_steps, seed=seed)
    click.echo(f"logged {n_runs} runs to experiment '{experiment}' ({exp_id}) in {uri}")


@main.command()
@_uri_option(_WRITE_URI)
@click.option("--experiment", "-e", default=None, help="Experiment name (default mlviz-demo-<task>).")
@click.option("--task", type=click.Choice(["multiclass", "binary", "multioutput"]), default="multiclass",
              show_default=True, help="Digit (10 classes), one digit vs the rest, or one head per quadrant.")
@click.option("--quick", is_flag=True, help="The small preset (about a minute and a half) that the tests use.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--replace", is_flag=True, help="Delete an earlier demo sweep in the experiment first.")
@click.option("--quick-flag", type=bool, default=False, hidden=True, help="--quick as a value (for MLproject).")
def demo(tracking_uri, experiment, task, quick, seed, replace, quick_flag):
    """Train a real two-stage sweep (a small CNN on scikit-learn's digits) and log it to MLflow."""
    try:
        from mlviz.demo.sweep import run_demo
    except ImportError as exc:
        from mlviz.errors import MlvizError

        raise MlvizError(f"the demo needs PyTorch and Optuna ({exc.name} is missing): pip install 'mlviz[demo]'") from None
    from mlviz.store.read import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    run_demo(uri, experiment, task, "quick" if quick or quick_flag else "default", seed, replace, echo=click.echo,
             progress=sys.stderr.isatty())


@main.command()
@_uri_option()
@click.option("--experiment", "-e", default=None, help="Experiment name or id.")
@click.option("--parent-run", default=None, help="Select among the runs nested under this run.")
@click.option("--filter", "filter_string", default="", help="MLflow search filter.")
@click.option("--metric", "-m", default=None, help="Objective metric.")
@click.option("--mode", type=click.Choice(["max", "min", ""]), default=None)
@click.option("--per-value-k", default=5, show_default=True, help="Phase 1: best k runs per parameter value.")
@click.option("--top-n", default=10, show_default=True, help="Phase 2: overall top n.")
@click.option("--second-metric", default=None, help="Phase 3: also the best by this metric.")
@click.option("--second-k", default=5, show_default=True)
@click.option("--diversity", default=0.0, show_default=True,
              help="Minimum normalised distance between picked configurations (0: off; try 0.1).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the picks to this CSV.")
@click.option("--tag", is_flag=True, help="Tag the picked runs with mlviz.selection_criterion in the store.")
def select(tracking_uri, experiment, parent_run, filter_string, metric, mode, per_value_k, top_n, second_metric,
           second_k, diversity, out, tag):
    """Pick stage-2 candidates from stage-1 runs (per-value top-k, overall top-n, second metric)."""
    from pathlib import Path

    from mlviz.analysis import NotApplicable
    from mlviz.analysis.selection import select_candidates
    from mlviz.errors import MlvizError
    from mlviz.sections.sweep import load_sweep
    from mlviz.store.read import Store
    from mlviz.store.write import Writer

    for name, value in (("--per-value-k", per_value_k), ("--top-n", top_n), ("--second-k", second_k)):
        _require(value >= 0, f"{name} must be at least 0, got {value}")
    _require(diversity >= 0, f"--diversity must be at least 0, got {diversity}")
    _require(out is None or Path(out).parent.is_dir(), f"--out: the folder {Path(out or '.').parent} does not exist")
    if tag:
        with Store(tracking_uri) as store:
            Writer(store)  # refuse an old-schema store before reading anything
    sweep = load_sweep(tracking_uri, experiment=experiment, parent_run=parent_run, filter_string=filter_string,
                       metric=metric, mode=mode or None).stage(1)
    try:
        picks = select_candidates(sweep, per_value_k=per_value_k, top_n=top_n, second_metric=second_metric,
                                  second_k=second_k, diversity=diversity).picks
    except NotApplicable as exc:
        raise MlvizError(str(exc)) from None
    if out:
        picks.to_csv(out, index=False)
    if tag:
        with Store(tracking_uri) as store:
            writer = Writer(store)
            for run_id, criterion in zip(picks["run_id"], picks["criterion"], strict=True):
                writer.set_tags(run_id, {"mlviz.selection_criterion": criterion})
    click.echo(picks[["run_id", "criterion", "phase", "score"]].to_string(index=False))
    click.echo(f"{len(picks)} candidates from {len(sweep.runs)} runs" + (f"; written to {out}" if out else ""))


@main.group("import")
def import_group():
    """Bring results from outside MLflow into a store (importing twice does not duplicate runs)."""


def _write(tracking_uri, experiment, runs):
    from mlviz.store.importers import write_runs
    from mlviz.store.read import default_tracking_uri
    from mlviz.store.write import open_for_writing

    uri = tracking_uri or default_tracking_uri()
    store, writer = open_for_writing(uri)
    with store:
        result = write_runs(writer, experiment, runs)
    click.echo(f"imported {result.created} runs into experiment '{experiment}' ({result.experiment_id}) in {uri}"
               + (f"; {result.skipped_existing} already there" if result.skipped_existing else "")
               + (f"; {result.redone} left half-written by an interrupted import were redone" if result.redone else ""))


_import_uri_option = _uri_option("Store to import into (default sqlite:///mlflow.db).")


@import_group.command("two-stage")
@click.argument("folder", type=click.Path())
@_import_uri_option
@click.option("--experiment", "-e", default=None, help="Experiment name (default: the folder's name).")
@click.option("--params", "param_columns", default=None, help="Comma-separated parameter columns (default: inferred).")
@click.option("--metrics", "metric_columns", default=None, help="Comma-separated metric columns (default: inferred).")
def import_two_stage(folder, tracking_uri, experiment, param_columns, metric_columns):
    """quick_search_results.csv, full_search_results.csv and training_histories.json from FOLDER."""
    from pathlib import Path

    from mlviz.store.importers import two_stage

    runs = two_stage(folder, *(_split(s) if s else None for s in (param_columns, metric_columns)))
    _write(tracking_uri, experiment or Path(folder).resolve().name, runs)


@import_group.command("optuna")
@click.argument("storage")
@click.option("--study", "study_name", required=True, help="Study name.")
@_import_uri_option
@click.option("--experiment", "-e", default=None, help="Experiment name (default: the study's name).")
@click.option("--metric", default=None, help="Name of the objective metric (default: the study's, or 'value').")
def import_optuna(storage, study_name, tracking_uri, experiment, metric):
    """Every trial of an Optuna study in STORAGE (e.g. sqlite:///optuna.db), intermediate values as histories."""
    from mlviz.store.importers import optuna_study

    _write(tracking_uri, experiment or study_name, optuna_study(storage, study_name, metric))


@import_group.command("epochs")
@click.argument("folder", type=click.Path())
@_import_uri_option
@click.option("--experiment", "-e", default="imported-runs", show_default=True)
@click.option("--name", default=None, help="Run name (default: the folder's name).")
def import_epochs(folder, tracking_uri, experiment, name):
    """One run from FOLDER/metrics_epoch.csv (+ val_predictions.csv as its predictions artifact)."""
    from mlviz.store.importers import epoch_run

    _write(tracking_uri, experiment, epoch_run(folder, name))


# Commands that live in their own modules (each imports only click at the top).
from mlviz.commands.compare import compare  # noqa: E402
from mlviz.commands.embed import embed  # noqa: E402
from mlviz.commands.explore import explore  # noqa: E402

for _command in (compare, embed, explore):
    main.add_command(_command)

if __name__ == "__main__":
    main()
