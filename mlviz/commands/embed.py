"""`mlviz embed`: a 2-D map of a run's features, logged into that run. Only click is imported here at
start-up; the work is imported inside the command (see mlviz/cli.py)."""

from __future__ import annotations

import click


@click.command("embed")
@click.option("--run", "run_id", default=None, help="The run whose embeddings (or model) to map; the map is logged into it.")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="Any URI MLflow accepts: sqlite:///mlflow.db (default), ./mlruns, http(s)://host:port.")
@click.option("--method", default="umap", show_default=True, help="Projection to 2-D: umap, pca or tsne.")
@click.option("--color-by", default=None,
              help="Colour by label (default), prediction, correct, confidence or any metadata column.")
@click.option("--layer", default=None,
              help="Take features from this layer of the run's model (e.g. features.4) over data/val_images.npz, "
                   "instead of the logged embeddings.")
@click.option("--features", "features_path", default=None, help="Features as an .npy file (samples × features).")
@click.option("--metadata", "metadata_path", default=None,
              help="A CSV whose rows pair with the features (label, pred, prob_<class>, sample_id, ...).")
@click.option("--n-neighbors", default=15, show_default=True, help="UMAP's neighbourhood size.")
@click.option("--n-epochs", default=None, callback=lambda ctx, param, value: _epochs(value),
              help="UMAP's optimisation epochs (default, or empty: 200; 500 for at most 5,000 points).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the projection and of the quality subsamples.")
@click.option("--out", default=None, help="Write the files to this folder instead of logging them.")
def embed(run_id, tracking_uri, method, color_by, layer, features_path, metadata_path, n_neighbors, n_epochs, seed,
          out):
    """Map a run's features to 2-D (UMAP, PCA or t-SNE) with neighbourhood quality; log embedding/ into the run.

    \b
    Examples:
      mlviz embed --run <RUN_ID>
      mlviz embed --run <RUN_ID> --method tsne --color-by correct
      mlviz embed --run <RUN_ID> --layer features.4
      mlviz embed --features feats.npy --metadata meta.csv --out figures/
    """
    from pathlib import Path

    from mlviz.analysis.embedding import METHODS
    from mlviz.errors import MlvizError
    from mlviz.sections.embedding import run_embedding

    if out and Path(out).exists() and not Path(out).is_dir():
        raise MlvizError(f"--out {out} is a file, not a folder")
    # MLproject passes "" for "not given"
    color_by, layer, out, tracking_uri = color_by or None, layer or None, out or None, tracking_uri or None
    method = method.lower().replace("-", "")
    if method not in METHODS:
        raise MlvizError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    if n_neighbors < 2:
        raise MlvizError(f"--n-neighbors must be at least 2, got {n_neighbors}")
    if metadata_path is not None and features_path is None and run_id is None:
        raise MlvizError("--metadata describes the rows of --features or of the run's embeddings: pass one of them")
    if features_path is not None and layer is not None:
        raise MlvizError("--features and --layer both say where the features come from: pass one")
    options = {"method": method, "color_by": color_by, "layer": layer, "features": features_path,
               "metadata": metadata_path, "n_neighbors": n_neighbors, "n_epochs": n_epochs, "seed": seed}
    run_embedding(run_id, tracking_uri=tracking_uri, out=out, options=options, echo=click.echo)


def _epochs(value: str | None) -> int | None:
    """A positive number of epochs; empty (the MLproject's default) means the default."""
    if value is None or value.strip() == "":
        return None
    return click.IntRange(min=1).convert(value.strip(), None, None)
