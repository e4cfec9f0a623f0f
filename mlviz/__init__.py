"""mlviz: the figures a researcher needs to understand a hyperparameter sweep, logged back to MLflow.

Python API (each step usable alone, e.g. in a notebook)::

    from mlviz import load_sweep, analyse, publish, ToFolder
    sweep = load_sweep("sqlite:///mlflow.db", experiment="my-sweep", metric="val_loss")
    report = analyse(sweep)                 # figures as data: report.figures, report.skipped
    publish(report, ToFolder("out/"))       # PNG + JSON + summary.json + index.html in out/mlviz/

    from mlviz.sections.sweep import RunSelection, visualize_sweep
    visualize_sweep(RunSelection(experiment="my-sweep"))   # all of it, logged to MLflow

Heavy imports (mlflow, matplotlib, torch) happen inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_sweep", "analyse", "publish", "ToFolder", "IntoRun", "HeatmapCallback"]

_WHERE = {"load_sweep": "mlviz.sections.sweep", "analyse": "mlviz.sections.sweep", "publish": "mlviz.publish",
          "ToFolder": "mlviz.publish", "IntoRun": "mlviz.publish",
          "HeatmapCallback": "mlviz.sections.training_heatmaps"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
