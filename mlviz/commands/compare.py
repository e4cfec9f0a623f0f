"""`mlviz compare`: several runs' predictions, or several sweeps, side by side in one comparison run."""

from __future__ import annotations

import click


def _int_option(value: str, name: str, minimum: int) -> int:
    from mlviz.errors import MlvizError

    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MlvizError(f"{name} must be a whole number, not '{value}'") from None
    if number < minimum:
        raise MlvizError(f"{name} must be at least {minimum}, not {number}")
    return number


def _broadcast(name: str, values: tuple, n: int) -> list:
    """One value per sweep: as many as sweeps, or one (or none) for all."""
    from mlviz.errors import MlvizError

    if len(values) in (0, 1):
        return [values[0] if values else None] * n
    if len(values) != n:
        raise MlvizError(f"give {name} once for all sweeps or once per sweep ({n}), not {len(values)} times")
    return list(values)


@click.command("compare")
@click.option("--run", "run_ids", multiple=True, metavar="ID",
              help="A run whose predictions to compare (repeat, or comma-separated: two or more).")
@click.option("--experiment", "-e", "experiments", multiple=True, metavar="NAME|ID",
              help="A sweep to compare (repeatable); with --run: the experiment that holds the comparison run "
                   "(default: the first run's).")
@click.option("--parent-run", "parent_runs", multiple=True, metavar="ID|NAME",
              help="The runs nested under this run are a sweep (repeatable: one sweep each).")
@click.option("--filter", "filters", multiple=True, metavar="FILTER",
              help="An MLflow search filter selecting a sweep (repeatable: one sweep each).")
@click.option("--metric", "-m", default=None, help="Sweeps: the objective (default: guessed per sweep).")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="Any URI MLflow accepts (default sqlite:///mlflow.db).")
@click.option("--reference", default="best", show_default=True,
              help="Runs: the reference of the differences: best (highest AUC), first, or a run id.")
@click.option("--predictions", default=None, help="Runs: artifact path of the predictions (default: found).")
@click.option("--n-boot", default="1000", show_default=True, metavar="N", help="Bootstrap resamples (sweeps: 500 unless given).")
@click.option("--seed", default="0", show_default=True, metavar="N", help="Seed of the bootstrap resamples.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write the figures to this folder instead of logging a comparison run.")
@click.option("--force", is_flag=True, help="Redo the comparison even when nothing changed.")
@click.option("--group-id", default=None, metavar="COLUMN",
              help="Runs: the column holding a patient/subject/video id when several rows belong to one; "
                   "intervals resample whole groups, paired by group between runs that share them "
                   "(default: detected when such an id repeats; 'none': rows).")
@click.pass_context
def compare(ctx, run_ids, experiments, parent_runs, filters, metric, tracking_uri, reference, predictions, n_boot,
            seed, out, force, group_id):
    """Compare runs (ROC, PR, calibration overlaid; a metrics table that says which differences are larger
    than the noise) or sweeps (importance, learning curves, stage agreement side by side).

    \b
      mlviz compare --run RUN_A --run RUN_B --run RUN_C
      mlviz compare -e sweep-a -e sweep-b
      mlviz compare -e my-sweep --parent-run first-try --parent-run second-try
    """
    import sys

    from mlviz.errors import MlvizError
    from mlviz.sections.compare import run_compare

    run_ids = [r.strip() for value in run_ids for r in value.split(",") if r.strip()]
    experiments = tuple(e for e in experiments if e)  # MLproject passes "" for "not given"
    out = out or None
    source = ctx.get_parameter_source("n_boot")
    options = {"seed": _int_option(seed, "--seed", 0), "reference": reference}
    group_id = (group_id or "").strip() or None  # MLproject passes "" for "not given"
    if group_id:
        options["group_id"] = group_id
    if run_ids or (source is not None and source.name != "DEFAULT"):
        options["n_boot"] = _int_option(n_boot, "--n-boot", 0)
    progress = sys.stderr.isatty()
    if run_ids:
        if parent_runs or filters:
            raise MlvizError("--parent-run and --filter select sweeps; with --run, compare runs only")
        if len(experiments) > 1:
            raise MlvizError("with --run, --experiment names the one experiment that holds the comparison run")
        run_compare(tracking_uri, run_ids=list(run_ids), experiment=experiments[0] if experiments else None,
                    out=out, options=options, predictions=predictions, force=force, progress=progress,
                    echo=click.echo)
        return
    from mlviz.sections.sweep import RunSelection

    if group_id:
        raise MlvizError("--group-id is for comparing runs' predictions (--run ID --run ID), not sweeps")
    n = max(len(experiments), len(parent_runs), len(filters))
    if n < 2:
        raise MlvizError("pass two or more runs (--run ID --run ID) or two or more sweeps (--experiment, "
                         "--parent-run or --filter, each repeated)")
    sweeps = [RunSelection(tracking_uri=tracking_uri, experiment=e, parent_run=p, filter_string=f or "",
                           metric=metric)
              for e, p, f in zip(_broadcast("--experiment", experiments, n), _broadcast("--parent-run", parent_runs, n),
                                 _broadcast("--filter", filters, n), strict=True)]
    run_compare(tracking_uri, sweeps=sweeps, out=out, options=options, force=force, progress=progress,
                echo=click.echo)
