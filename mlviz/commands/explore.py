"""`mlviz explore`: browse a 2-D embedding in a local Dash app (only click is imported at start-up)."""

from __future__ import annotations

import click

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def prepare_explorer(run_id: str | None = None, tracking_uri: str | None = None, cache_dir: str | None = None,
                     coords_file: str | None = None, metadata_file: str | None = None, mis_csv: str | None = None,
                     correct_csv: str | None = None, image_dir: str | None = None, image_root: str | None = None,
                     color_by: str | None = None, hover: str | None = None):
    """(Dash app, ExploreTable) from a run's embedding files or a seed-003 cache folder; every input is
    read and checked here, before anything listens on a port."""
    from pathlib import Path

    from mlviz.errors import MlvizError
    from mlviz.explore.app import Images, build_app

    if bool(run_id) == bool(cache_dir):
        raise MlvizError("pass either --run RUN_ID or --cache-dir DIR" if not run_id else
                         "pass --run or --cache-dir, not both")
    if image_dir and image_root:
        raise MlvizError("pass --image-dir or --image-root, not both")
    if image_dir and not Path(image_dir).expanduser().is_dir():
        raise MlvizError(f"--image-dir {image_dir}: no such folder")
    if image_root and not image_root.lower().startswith(("http://", "https://", "/")):
        raise MlvizError(f"--image-root must be an http(s):// URL or a path on this server, not '{image_root}'")
    images = Images(folder=str(Path(image_dir).expanduser().resolve()) if image_dir else None,
                    url_prefix=image_root)
    if cache_dir:
        from mlviz.explore.data import load_cache_dir

        table = load_cache_dir(cache_dir, coords_file, metadata_file, mis_csv, correct_csv)
        title = f"mlviz explore · {Path(cache_dir).name}"
    else:
        table, arrays, title = _from_run(run_id, tracking_uri, coords_file, metadata_file, mis_csv, correct_csv,
                                         want_images=not images.any)
        images.arrays = arrays
    if (images.folder or images.url_prefix) and table.image_column is None:
        raise MlvizError("the metadata has no file_name column, so --image-dir/--image-root cannot find images")
    return build_app(table, color_by, hover, images, title=title), table


def _from_run(run_id, tracking_uri, coords_file, metadata_file, mis_csv, correct_csv, want_images: bool):
    import tempfile
    from pathlib import Path

    from mlviz.errors import MlvizError
    from mlviz.explore.data import (
        RUN_COORDS,
        RUN_IMAGES,
        RUN_METADATA,
        load_embedding_files,
        read_image_arrays,
    )
    from mlviz.store.read import Store

    reviews = {}
    for option, given in (("mis-csv", mis_csv), ("correct-csv", correct_csv)):
        if given:
            if not Path(given).is_file():
                raise MlvizError(f"--{option} {given}: no such file")
            reviews[option] = Path(given)
    coords_art, meta_art = coords_file or RUN_COORDS, metadata_file or RUN_METADATA
    with Store(tracking_uri) as store, tempfile.TemporaryDirectory(prefix="mlviz-explore-") as tmp:
        record = store.run(run_id)
        paths = set(store.artifact_paths(run_id))
        for art in (coords_art, meta_art):
            if art not in paths:
                raise MlvizError(f"run {run_id} has no artifact {art}; make it with `mlviz embed --run {run_id}`")
        coords = store.download(run_id, coords_art, Path(tmp) / "c")
        metadata = store.download(run_id, meta_art, Path(tmp) / "m")
        name = record.get("run_name") or run_id
        table = load_embedding_files(coords, metadata, reviews, source=f"run {name} ({run_id[:8]})")
        arrays = None
        if want_images and RUN_IMAGES in paths:
            arrays = read_image_arrays(store.download(run_id, RUN_IMAGES, Path(tmp) / "i"), table)
        elif want_images:
            table.notes.append(f"the run logged no {RUN_IMAGES}: points have no images")
    return table, arrays, f"mlviz explore · {name}"


def _port(text: str) -> int:
    from mlviz.errors import MlvizError

    try:
        port = int(text)
    except (TypeError, ValueError):
        port = -1
    if not 0 <= port <= 65535:
        raise MlvizError(f"--port must be a number from 0 to 65535 (0: any free port), not '{text}'")
    return port


@click.command("explore")
@click.option("--run", "run_id", default=None, help="A run that logged mlviz/embedding/ (made by `mlviz embed`).")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="With --run: any URI MLflow accepts (default sqlite:///mlflow.db).")
@click.option("--cache-dir", default=None,
              help="A folder with metadata.csv and a coordinates .npy (optional mis_*.csv, correct_*.csv).")
@click.option("--coords-file", default=None,
              help="The (n, 2) coordinates .npy: in --cache-dir (default: its *coords*.npy) or, with --run, "
                   "the artifact path (default mlviz/embedding/embedding_coords.npy).")
@click.option("--metadata-file", default=None,
              help="The metadata CSV, one row per point (default metadata.csv, or with --run "
                   "mlviz/embedding/embedding_metadata.csv).")
@click.option("--mis-csv", default=None, help="Reviewer CSV of misclassified samples with a JSON 'rationale' "
                                              "column (default: the cache folder's mis_*.csv).")
@click.option("--correct-csv", default=None, help="Reviewer CSV of correct samples (default: correct_*.csv).")
@click.option("--image-dir", default=None,
              help="Folder of the images named by the metadata's file_name column (served only from here).")
@click.option("--image-root", default=None, help="URL prefix of images hosted elsewhere, instead of --image-dir.")
@click.option("--color-by", default=None, help="Metadata column to colour by (default: the label column).")
@click.option("--hover", default=None, help="Comma-separated metadata columns shown on hover.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback lets the network see your data.")
@click.option("--port", default="8050", show_default=True, help="Port to listen on (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Do not open a web browser.")
def explore(run_id, tracking_uri, cache_dir, coords_file, metadata_file, mis_csv, correct_csv, image_dir,
            image_root, color_by, hover, host, port, no_browser):
    """Browse a 2-D embedding: hover, colour by any column, click a point for its image and metadata.

    \b
      mlviz explore --run <RUN_ID>
      mlviz explore --cache-dir cache/seed1 --coords-file vis_umap_coords.npy --image-dir images/
    """
    import importlib.util
    import threading
    import webbrowser

    from mlviz.errors import MlvizError

    if importlib.util.find_spec("dash") is None:
        raise MlvizError("the explorer needs Dash: pip install 'mlviz[explore]'")
    from mlviz.explore.app import Server

    port_number = _port(port)
    app, table = prepare_explorer(run_id, tracking_uri, cache_dir, coords_file, metadata_file, mis_csv,
                                  correct_csv, image_dir, image_root, color_by, hover)
    server = Server(app, host, port_number)
    for note in table.notes:
        click.echo(f"note: {note}")
    if host not in LOOPBACK:
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can browse these data")
    click.echo(f"mlviz explore: {table.n} points at {server.url} (Ctrl+C to stop)", nl=True)
    if not no_browser:
        threading.Timer(0.5, webbrowser.open, [server.url]).start()
    server.serve_forever()
