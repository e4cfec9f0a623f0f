"""Command line. Only click is imported at the top so `mlviz --help` starts fast; each command
imports what it needs. Errors a user can fix print one line and exit with code 2."""

from __future__ import annotations

import sys

import click

EXIT_USAGE = 2


class _Group(click.Group):
    """Turns mlviz/MLflow errors into one line and exit code 2 instead of a traceback."""

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
                click.echo(f"mlviz: error: {exc}", err=True)
                sys.exit(EXIT_USAGE)
            if name == "MlflowException" or name.endswith("MlflowException"):
                msg = str(getattr(exc, "message", exc)).strip().splitlines()
                click.echo(f"mlviz: error: {msg[0] if msg else name}", err=True)
                sys.exit(EXIT_USAGE)
            click.echo(f"mlviz: internal error: {name}: {exc} (run with --debug for the traceback)", err=True)
            sys.exit(1)


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


def _stage_parents(stage1: str | None, stage2: str | None) -> dict[int, str]:
    return {k: v for k, v in ((1, stage1), (2, stage2)) if v}


@main.command()
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="Any URI MLflow accepts: sqlite:///mlflow.db (default), ./mlruns, http(s)://host:port.")
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
@click.option("--seed", default=0, show_default=True, help="Seed for bootstrap resampling.")
@click.option("--force", is_flag=True, help="Redo the analysis even when nothing changed.")
@click.option("--force-flag", type=bool, default=False, hidden=True, help="--force as a value (for MLproject).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def visualize(tracking_uri, experiment, parent_run, filter_string, statuses, metric, mode, final, stage1_parent,
              stage2_parent, out, top_k, n_boot, seed, force, force_flag, quiet):
    """Analyse a sweep and log every figure to MLflow (or write them to --out)."""
    from mlviz.pipeline import Selection
    from mlviz.pipeline import visualize as run

    if top_k < 1 or n_boot < 10:
        raise click.BadParameter("--top-k must be ≥ 1 and --n-boot ≥ 10")
    selection = Selection(
        tracking_uri=tracking_uri or None, experiment=experiment or None, parent_run=parent_run or None,
        filter_string=filter_string or "", statuses=tuple(s.upper() for s in statuses), metric=metric or None,
        mode=mode or None, final=final, stage_parents=_stage_parents(stage1_parent or None, stage2_parent or None),
    )
    run(selection, out=out or None, options={"top_k": top_k, "n_boot": n_boot, "seed": seed}, force=force or force_flag,
        progress=not quiet and sys.stderr.isatty(), echo=click.echo)


@main.command("synthetic-sweep")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="Store to write to (default sqlite:///mlflow.db; created if absent).")
@click.option("--experiment", "-e", default="synthetic-sweep", show_default=True)
@click.option("--runs", "n_runs", default=200, show_default=True, help="Number of runs.")
@click.option("--steps", "n_steps", default=10, show_default=True, help="Metric history length per run.")
@click.option("--seed", default=0, show_default=True)
def synthetic_sweep(tracking_uri, experiment, n_runs, n_steps, seed):
    """Log a generated sweep with known structure (a strong, a weak and a null parameter)."""
    from mlviz.demo.synthetic import log_synthetic_sweep
    from mlviz.store.read import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    if n_runs < 1:
        raise click.BadParameter("--runs must be ≥ 1")
    exp_id = log_synthetic_sweep(uri, experiment, n_runs=n_runs, n_steps=n_steps, seed=seed)
    click.echo(f"logged {n_runs} runs to experiment '{experiment}' ({exp_id}) in {uri}")


if __name__ == "__main__":
    main()
