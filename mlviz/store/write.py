"""The only code that writes to MLflow, and the guards that keep a user's store as it was.

`Writer(store)` refuses before anything is touched when writing would change the store beyond what was
asked (an SQLite store with an older schema, which MLflow would migrate in place; a file store MLflow
cannot search). Every command that writes — analysis runs, figures logged into a model's run,
`select --tag`, the importers, the demo and the synthetic sweep — goes through it.

Analysis runs: the run `mlflow run` started (MLFLOW_RUN_ID), or the run of the same kind and selection
key (so running again replaces rather than duplicates), or a new one. Its `mlviz.fingerprint` tag says
"incomplete" from before the old figures are deleted until the new ones have landed, so an interrupted
upload is redone next time rather than taken as up to date.

Every MLflow call goes through `_Guarded`: MLflow's warnings become one line per problem
(`mlviz.store.quiet`), and a failure outside mlviz — the tracking server lost or silent, a full disk, a
run deleted meanwhile — one line (`mlviz.store.faults`) that says what state the store is left in.
MLflow's client already retries every HTTP request, artifact uploads to a `--serve-artifacts` server
included (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7, with backoff), so no retry is added here; a local
artifact folder that is full is not helped by retrying either.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlviz.errors import Fault, MlvizError
from mlviz.text import first_line

INCOMPLETE = "incomplete"
IMAGE_KEY_PREFIX = "mlviz_"


_DOING = {  # MlflowClient method -> what the user reads it was doing
    "log_artifact": "uploading figures", "log_artifacts": "uploading figures", "log_image": "uploading figures",
    "log_table": "uploading figures", "log_batch": "logging metrics and tags", "set_tag": "logging metrics and tags",
    "set_terminated": "finishing the run", "create_run": "creating a run", "delete_run": "deleting a run",
    "create_experiment": "creating the experiment", "set_experiment_tag": "tagging the experiment",
}


@contextlib.contextmanager
def guarded(store, doing: str):
    """MLflow calls inside: warnings as one line per problem, failures outside mlviz as a `Fault`."""
    from mlviz.store.faults import fault
    from mlviz.store.quiet import capture

    try:
        with capture(store):
            yield
    except MlvizError:
        raise
    except Exception as exc:
        err = fault(exc, store.uri, doing)
        if err is None:
            raise
        raise err from None


class _Guarded:
    """An MlflowClient whose every call is `guarded`."""

    def __init__(self, client, store):
        self._client, self._store = client, store

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        doing = _DOING.get(name, "reading the store" if name.startswith(("get", "search", "list")) else
                           "writing to the store")

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with guarded(self._store, doing):
                return attr(*args, **kwargs)

        return call


def _repair_hint(kind: str) -> str:
    return f"the next `mlviz {kind}`" if kind in ("visualize", "compare") else "the next run"


@dataclass
class Target:
    run_id: str | None  # None: a new run will be created
    up_to_date: bool
    reused: bool


class Writer:
    """Writes to the store a `mlviz.store.read.Store` opened; refuses stores that writing would change
    beyond what was asked (see `Store.writable`)."""

    def __init__(self, store):
        if not store.writable:
            raise MlvizError(f"will not log into {store.uri}: {store.read_only_reason}")
        self.store = store
        self.client = _Guarded(store.client, store)

    # ------------------------------------------------------------------ experiments and runs
    def experiment(self, name: str, artifact_location: str | None = None) -> str:
        """The id of the experiment with this name, created when missing; either way it is marked as
        model training for the MLflow UI unless the user said otherwise."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage == "deleted":
            raise MlvizError(f"experiment '{name}' is deleted; restore it or choose another name")
        exp_id = exp.experiment_id if exp else self.client.create_experiment(name, artifact_location=artifact_location)
        self.mark_model_training(exp_id)
        return exp_id

    def mark_model_training(self, experiment_id: str) -> None:
        from mlviz.store.ui import mark_model_training

        mark_model_training(self.client, experiment_id)

    def create_run(self, experiment_id: str, run_name: str | None = None, tags: dict | None = None,
                   start_time: int | None = None) -> str:
        return self.client.create_run(experiment_id, run_name=run_name, tags=tags or {},
                                      start_time=start_time).info.run_id

    def log(self, run_id: str, metrics: dict[str, float] | None = None, params: dict[str, str] | None = None,
            tags: dict[str, str] | None = None, histories: dict[str, list[tuple[int, float]]] | None = None,
            timestamp: int | None = None) -> None:
        """Metrics (last values, and histories as (step, value) pairs), params and tags, in batches."""
        from mlflow.entities import Metric, Param, RunTag

        now = timestamp or int(time.time() * 1000)
        items = [Metric(k, float(v), now, s) for k, hist in (histories or {}).items() for s, v in hist]
        items += [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if k not in (histories or {})]
        ps = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        ts = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for i in range(0, max(len(items), 1), 1000):
            first = i == 0
            self.client.log_batch(run_id, metrics=items[i:i + 1000], params=ps if first else [],
                                  tags=ts if first else [])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.log(run_id, tags=tags)

    def finish(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        self.client.set_terminated(run_id, status, end_time=end_time)

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def search(self, experiment_ids: list[str], filter_string: str, max_results: int = 50000, order_by=None):
        return self.client.search_runs(experiment_ids, filter_string=filter_string, max_results=max_results,
                                       order_by=order_by)

    # ------------------------------------------------------------------ artifacts
    def log_artifacts(self, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)

    def log_artifact(self, run_id: str, file: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(file), artifact_path=artifact_path)

    def artifact_paths(self, run_id: str, folder: str = "") -> list[str]:
        return self.store.artifact_paths(run_id, folder)

    def _repo(self, run_id: str):
        """The run's artifact repository, resolved against the client's own tracking URI (an
        `mlflow-artifacts:/` location means "the server this client talks to", not the default store)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(self.client.get_run(run_id).info.artifact_uri,
                                       tracking_uri=self.client.tracking_uri)

    def delete_artifacts(self, run_id: str, paths: Iterable[str]) -> None:
        """Remove earlier files so a figure that no longer applies does not linger; stores that cannot
        delete keep them (the new ones overwrite them by name)."""
        paths = list(paths)
        if not paths:
            return
        from mlviz.store.faults import network_reason

        repo = self._repo(run_id)
        for p in paths:
            try:
                with guarded(self.store, "deleting earlier figures"):
                    repo.delete_artifacts(p)
            except Fault as exc:
                if exc.unreachable:
                    raise
            except (NotImplementedError, OSError):
                pass
            except Exception as exc:  # noqa: BLE001 - an artifact that is already gone
                gone = "not found" in str(exc).lower() or "no such" in str(exc).lower()
                if network_reason(exc) is not None or not gone:
                    raise

    def log_images(self, run_id: str, grid: list[tuple[str, Path]]) -> None:
        """Figures as images of the MLflow UI's image grid, one key each at step 0 (the same key in every
        run, so up to 10 runs show side by side), replacing that key's earlier images in the run."""
        from PIL import Image

        if not grid:
            return
        keys = {key for key, _ in grid}
        old = [p for p in self.store.artifact_paths(run_id, "images")
               if Path(p).name.split("+step+")[0] in keys]
        self.delete_artifacts(run_id, old)
        for key, png in grid:
            with Image.open(png) as img:
                self.client.log_image(run_id, img.convert("RGB"), key=key, step=0)

    def log_image_steps(self, run_id: str, key: str, images: list[tuple[int, object]]) -> None:
        """Images (PIL or HxWx3 uint8 arrays) under one key with the step slider of the MLflow UI's image
        grid, e.g. heatmaps per epoch."""
        for step, image in images:
            self.client.log_image(run_id, image, key=key, step=int(step))

    def log_tables(self, run_id: str, tables: dict) -> None:
        """Small tables the MLflow UI can sort and compare across runs (mlflow.log_table), as
        mlviz/tables/<name>.json."""
        existing = set(self.store.artifact_paths(run_id, "mlviz/tables")) if tables else set()
        for name, frame in tables.items():
            path = f"mlviz/tables/{name}.json"
            self.delete_artifacts(run_id, [path] if path in existing else [])  # log_table would append
            self.client.log_table(run_id, data=frame, artifact_file=path)

    def log_pytorch_model(self, run_id: str, model, name: str = "model", input_example=None) -> None:
        import mlflow
        import mlflow.pytorch

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.store.uri)
        try:
            with guarded(self.store, "logging the model"), mlflow.start_run(run_id=run_id):
                mlflow.pytorch.log_model(model, name=name, pip_requirements=["torch"], input_example=input_example)
        finally:
            mlflow.set_tracking_uri(previous)

    # ------------------------------------------------------------------ reports
    def find_analysis(self, experiment_id: str, kind: str, selection_key: str, fingerprint: str) -> Target:
        """Where an analysis goes, and whether it is already there with the same fingerprint."""
        from mlflow.exceptions import MlflowException

        active = os.environ.get("MLFLOW_RUN_ID")
        if active:
            try:
                run = self.client.get_run(active)
            except MlflowException:
                raise MlvizError(f"MLFLOW_RUN_ID={active} is not a run of this tracking store") from None
            return Target(active, run.data.tags.get("mlviz.fingerprint") == fingerprint, True)
        # The earliest run of the selection is its analysis run (the one concurrent analyses agree on).
        run = self._first_analysis(experiment_id, kind, selection_key)
        if run is None:
            return Target(None, False, False)
        return Target(run.info.run_id, run.data.tags.get("mlviz.fingerprint") == fingerprint, True)

    def _first_analysis(self, experiment_id: str, kind: str, selection_key: str):
        """The analysis run every process agrees on: the earliest (start_time, run_id) of the live runs of
        this kind and selection key; None when there is none."""
        query = f"tags.`mlviz.analysis` = '{kind}' and tags.`mlviz.selection_key` = '{selection_key}'"
        found = self.search([experiment_id], query, max_results=1000)
        return min(found, key=lambda r: (r.info.start_time or 0, r.info.run_id), default=None)

    def _settle(self, experiment_id: str, kind: str, selection_key: str, mine: str) -> str:
        """After creating `mine`: the run that stays. Several analyses of one selection started at once each
        create a run; the earliest wins and the others delete theirs, so one run remains."""
        winner = self._first_analysis(experiment_id, kind, selection_key)
        if winner is None or winner.info.run_id == mine:
            return mine
        self.delete_run(mine)
        return winner.info.run_id

    def _wait_for(self, run_id: str, fingerprint: str) -> bool:
        """Wait for a concurrent analysis logging into `run_id`; True when it finished with this
        fingerprint (nothing left to do), False when it failed, holds another analysis or took too long."""
        timeout = float(os.environ.get("MLVIZ_ANALYSIS_WAIT_S", "300"))
        deadline = time.monotonic() + timeout
        while True:
            run = self.client.get_run(run_id)
            if run.info.lifecycle_stage == "deleted":
                return False
            fp = run.data.tags.get("mlviz.fingerprint")
            if run.info.status != "RUNNING":
                return run.info.status == "FINISHED" and fp == fingerprint
            if fp not in (INCOMPLETE, fingerprint) or time.monotonic() > deadline:
                return False
            time.sleep(0.5)

    def log_analysis(self, root: Path, *, experiment_id: str, kind: str, run_name: str, selection_key: str,
                     fingerprint: str, target: Target | None, tags: dict, metrics: dict,
                     grid: list[tuple[str, Path]], tables: dict) -> str:
        """Log root/mlviz/** into the analysis run of this selection (replacing its earlier figures).

        Concurrent analyses of one selection end with one run: each that creates a run checks whether an
        earlier one exists (then deletes its own and waits for that one to finish, logging into it only if
        it fails or holds another analysis), and checks again before finishing, since a file store shows a
        new run before its tags."""
        self._check_artifact_location(experiment_id)
        target = target or self.find_analysis(experiment_id, kind, selection_key, fingerprint)
        tags = {**tags, "mlviz.analysis": kind, "mlviz.selection_key": selection_key}
        managed = not os.environ.get("MLFLOW_RUN_ID")
        created = False
        if target.run_id is None:
            mine = self.create_run(experiment_id, run_name, {**tags, "mlviz.fingerprint": INCOMPLETE})
            run_id = self._settle(experiment_id, kind, selection_key, mine) if managed else mine
            created = run_id == mine
            if not created and self._wait_for(run_id, fingerprint):
                return run_id
        else:
            run_id = target.run_id
        marked = created  # a run mlviz created reads "incomplete" from the start
        try:
            if not created:
                self.set_tags(run_id, {"mlviz.fingerprint": INCOMPLETE})
                marked = True
                top = self.store.artifact_paths(run_id, "mlviz")
                images = [p for p in self.store.artifact_paths(run_id, "images")
                          if Path(p).name.startswith(IMAGE_KEY_PREFIX)]
                self.delete_artifacts(run_id, (["mlviz"] if top else []) + images)
            self.mark_model_training(experiment_id)
            self.log_artifacts(run_id, root)
            self.log_images(run_id, grid)
            self.log_tables(run_id, tables)
            self.log(run_id, metrics=metrics, tags=tags)
            self.set_tags(run_id, {"mlviz.fingerprint": fingerprint})
        except BaseException as exc:
            fault = exc if isinstance(exc, Fault) else None
            if managed and marked and not (fault and (fault.unreachable or fault.kind == "deleted")):
                with contextlib.suppress(Exception):  # a server that is gone would only retry again
                    self.finish(run_id, "FAILED")
            if fault is None:
                raise
            if fault.kind == "deleted":
                after = f"{_repair_hint(kind)} makes a new analysis run"
            elif marked:
                after = f"the analysis run {run_id} is marked incomplete and {_repair_hint(kind)} repairs it"
            else:
                after = f"the analysis run {run_id} was left as it was"
            raise Fault(f"{fault}; {after}", fault.kind) from None
        if managed and created:
            winner = self._settle(experiment_id, kind, selection_key, run_id)
            if winner != run_id:  # an earlier run showed up late (a file store writes tags after the run)
                return winner if self._wait_for(winner, fingerprint) else self.log_analysis(
                    root, experiment_id=experiment_id, kind=kind, run_name=run_name,
                    selection_key=selection_key, fingerprint=fingerprint,
                    target=Target(winner, False, True), tags=tags, metrics=metrics, grid=grid, tables=tables)
        if managed:
            self.finish(run_id, "FINISHED")
        return run_id

    def log_into_run(self, root: Path, run_id: str, *, sections: list[str], top: list[str], tags: dict,
                     metrics: dict, grid: list[tuple[str, Path]], tables: dict) -> None:
        """Log root/mlviz/<section>/ for each section (replacing that section's earlier files) and the
        report's top-level files into an existing run."""
        self.refuse_moved(run_id)
        self.mark_model_training(self.refuse_deleted(run_id).info.experiment_id)
        existing = set(self.store.artifact_paths(run_id, "mlviz"))
        stale = [f"mlviz/{s}" for s in sections if any(p.startswith(f"mlviz/{s}/") for p in existing)]
        try:
            self.delete_artifacts(run_id, stale)
            for section in sections:
                if (root / "mlviz" / section).is_dir():
                    self.log_artifacts(run_id, root / "mlviz" / section, f"mlviz/{section}")
            for name in top:
                self.log_artifact(run_id, root / "mlviz" / name, "mlviz")
            self.log_images(run_id, grid)
            self.log_tables(run_id, tables)
            if metrics or tags:
                self.log(run_id, metrics=metrics, tags=tags)
        except Fault as exc:
            raise Fault(f"{exc}; run {run_id} may hold part of these figures until the next run replaces them",
                        exc.kind) from None

    def refuse_deleted(self, run_id: str):
        """The run, unless it was deleted (by someone else, while mlviz analysed it): then one line, and
        nothing is logged into it. MLflow would take its files but refuse its metrics half-way."""
        run = self.client.get_run(run_id)
        if run.info.lifecycle_stage == "deleted":
            raise Fault(f"run {run_id} was deleted while it was being analysed; nothing was logged into it", "deleted")
        return run

    def refuse_moved(self, run_id: str) -> None:
        """A run whose recorded artifact location is gone (the store was moved) is read from the store's
        own folder; logging would write to the old location, so it is refused."""
        if self.store.relocated(run_id) is not None:
            raise MlvizError(f"run {run_id}'s recorded artifact location does not exist here (the store was "
                             "moved); use --out DIR")

    def _check_artifact_location(self, experiment_id: str) -> None:
        """Refuse to create directories for a store written on another machine (e.g. /home/someone/...)."""
        location = self.client.get_experiment(experiment_id).artifact_location
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
            raise MlvizError(f"the experiment's artifact location {location} does not exist on this machine "
                             "(the store was written elsewhere); use --out DIR to write the figures to a "
                             "folder")


def open_for_writing(tracking_uri: str | None):
    """A Store that may be created (a new SQLite file or mlruns folder: what the user asked for) and its
    Writer; an existing store that writing would change is refused before anything is touched."""
    from mlviz.store.read import Store

    store = Store(tracking_uri, create=True)
    try:
        return store, Writer(store)
    except BaseException:
        store.close()
        raise


__all__ = ["Writer", "Target", "open_for_writing", "first_line", "INCOMPLETE", "IMAGE_KEY_PREFIX"]
