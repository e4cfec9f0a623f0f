"""The only code that writes to MLflow: log a rendered report folder into the analysis run.

The analysis run is the run `mlflow run` started (MLFLOW_RUN_ID), or the `mlviz-visualize` run of the
same selection (found by its `mlviz.selection_key` tag, so running again replaces rather than
duplicates), or a new one. Artifacts are logged in one call from a finished folder; the run's
`mlviz.fingerprint` tag says "incomplete" from before the old figures are deleted until the new ones have
landed, so an interrupted upload is redone next time rather than taken as up to date.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlviz.errors import MlvizError

ANALYSIS_RUN_NAME = "mlviz-visualize"
INCOMPLETE = "incomplete"


@dataclass
class Target:
    run_id: str | None  # None: a new run will be created
    up_to_date: bool
    reused: bool


def find_target(client, experiment_id: str, selection_key: str, fingerprint: str, kind: str = "visualize") -> Target:
    """Where the analysis goes, and whether it is already there with the same fingerprint."""
    from mlflow.exceptions import MlflowException

    active = os.environ.get("MLFLOW_RUN_ID")
    if active:
        try:
            run = client.get_run(active)
        except MlflowException:
            raise MlvizError(f"MLFLOW_RUN_ID={active} is not a run of this tracking store") from None
        return Target(active, run.data.tags.get("mlviz.fingerprint") == fingerprint, True)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlviz.analysis` = '{kind}' and tags.`mlviz.selection_key` = '{selection_key}'",
        max_results=5,
        order_by=["attributes.start_time DESC"],
    )
    if not found:
        return Target(None, False, False)
    run = found[0]
    return Target(run.info.run_id, run.data.tags.get("mlviz.fingerprint") == fingerprint, True)


def _check_artifact_location(client, experiment_id: str) -> None:
    """Refuse to create directories for a store written on another machine (e.g. /home/someone/...)."""
    location = client.get_experiment(experiment_id).artifact_location
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return
    path = Path(unquote(parsed.path))
    existing = next((p for p in (path, *path.parents) if p.exists()), Path(path.anchor))
    # A location under a user's home folder that is missing here (/home/someone/... with no /home/someone)
    # was written on another machine. One whose parent folder exists (/tmp/mlruns before its first
    # artifact) is simply not created yet, and MLflow creates it with the first artifact.
    home_roots = {Path(path.anchor), Path("/home"), Path("/Users"), Path.home().parent}
    if existing in home_roots:
        raise MlvizError(
            f"the experiment's artifact location {location} does not exist on this machine "
            "(the store was written elsewhere); use --out DIR to write the figures to a folder"
        )


def log_report(
    client,
    folder: Path,
    *,
    experiment_id: str,
    target: Target,
    tags: dict[str, str],
    metrics: dict[str, float],
    fingerprint: str,
) -> str:
    """Log `folder/mlviz/**` into the target run; returns its run id."""
    import time

    from mlflow.entities import Metric, RunTag

    _check_artifact_location(client, experiment_id)
    # The run says "incomplete" until every file landed: a crash in between leaves a run that the next
    # analysis of the same selection finds (by its tags) and redoes, never one that looks up to date.
    if target.run_id is None:
        run_id = client.create_run(experiment_id, run_name=ANALYSIS_RUN_NAME,
                                   tags={**tags, "mlviz.fingerprint": INCOMPLETE}).info.run_id
    else:
        run_id = target.run_id
        client.set_tag(run_id, "mlviz.fingerprint", INCOMPLETE)
        _delete_previous(client, run_id)
    try:
        client.log_artifacts(run_id, str(folder))
        _log_dashboards(client, run_id, folder)
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        client.set_tag(run_id, "mlviz.fingerprint", fingerprint)
    except BaseException:
        if not os.environ.get("MLFLOW_RUN_ID"):
            client.set_terminated(run_id, "FAILED")
        raise
    if not os.environ.get("MLFLOW_RUN_ID"):
        client.set_terminated(run_id, "FINISHED")
    return run_id


def _artifact_repo(client, run_id: str):
    """The run's artifact repository, resolved against the client's own tracking URI (an
    `mlflow-artifacts:/` location means "the server this client talks to", not the default store)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(client.get_run(run_id).info.artifact_uri, tracking_uri=client.tracking_uri)


def _delete_previous(client, run_id: str) -> None:
    """Remove the figures of an earlier analysis so a figure that no longer applies does not linger."""
    repo = _artifact_repo(client, run_id)
    try:
        top = [f.path for f in repo.list_artifacts()]
        if "mlviz" in top:
            repo.delete_artifacts("mlviz")
        if "images" in top:
            for f in repo.list_artifacts("images"):
                if f.path.startswith(f"images/{IMAGE_KEY_PREFIX}"):
                    repo.delete_artifacts(f.path)
    except (NotImplementedError, OSError):
        pass  # stores that cannot delete keep the old files; the new ones overwrite them by name


IMAGE_KEY_PREFIX = "mlviz_"


def _log_dashboards(client, run_id: str, folder: Path) -> None:
    """Dashboards also go to the UI's image grid (same key in every analysis run), so sweeps can be
    compared side by side in the MLflow UI's chart view."""
    log_grid_images(client, run_id, sorted(Path(folder).glob("mlviz/*/*_summary_dashboard.png")))


def log_grid_images(client, run_id: str, pngs: list[Path]) -> None:
    """Figures as images of the MLflow UI's image grid, key `mlviz_<file stem>` at step 0 (the same key in
    every run, so up to 10 runs show side by side), replacing that key's earlier images in the run."""
    from PIL import Image

    if not pngs:
        return
    keys = {IMAGE_KEY_PREFIX + Path(p).stem for p in pngs}
    repo = _artifact_repo(client, run_id)
    try:
        for f in repo.list_artifacts("images"):
            if Path(f.path).name.split("+step+")[0] in keys:
                repo.delete_artifacts(f.path)
    except (NotImplementedError, OSError):
        pass
    for png in pngs:
        with Image.open(png) as img:
            client.log_image(run_id, img.convert("RGB"), key=IMAGE_KEY_PREFIX + Path(png).stem, step=0)


def log_section(client, run_id: str, folder: Path, section: str, metrics: dict[str, float] | None = None,
                tags: dict[str, str] | None = None) -> None:
    """Log a rendered section folder (PNG/JSON/CSV) into an existing run as `mlviz/<section>/`,
    replacing the previous files of that section; optional headline metrics and tags."""
    import time

    from mlflow.entities import Metric, RunTag

    target = f"mlviz/{section}" if section else "mlviz"
    if section:  # the top level holds other sections too: only files are overwritten there
        repo = _artifact_repo(client, run_id)
        try:
            if any(f.path == target for f in repo.list_artifacts("mlviz")):
                repo.delete_artifacts(target)
        except (NotImplementedError, OSError):
            pass
    client.log_artifacts(run_id, str(folder), artifact_path=target)
    now = int(time.time() * 1000)
    if metrics or tags:
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                         tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])


def log_image_steps(client, run_id: str, key: str, images: list[tuple[int, object]]) -> None:
    """Images (PIL or HxWx3 uint8 arrays) under one key with the step slider of the MLflow UI's
    image grid, e.g. heatmaps per epoch."""
    for step, image in images:
        client.log_image(run_id, image, key=key, step=int(step))
