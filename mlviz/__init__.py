"""mlviz: the figures a researcher needs to understand a hyperparameter sweep, logged back to MLflow.

Python API (each step usable alone, e.g. in a notebook)::

    from mlviz import load_sweep, analyse, render_report, log_report
    sweep = load_sweep("sqlite:///mlflow.db", experiment="my-sweep", metric="val_loss")
    report = analyse(sweep)                 # plain data: {section/name: result}
    folder = render_report(report, "out/")  # PNG + JSON + summary.json + index.html
    log_report(...)                          # or mlviz.pipeline.visualize(...) for all steps

Heavy imports (mlflow, matplotlib, torch) happen inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_sweep", "analyse", "render_report", "visualize"]


def __getattr__(name):
    if name in ("load_sweep", "analyse", "render_report", "visualize"):
        from mlviz import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
