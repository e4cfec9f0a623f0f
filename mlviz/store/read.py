"""Reading runs from any tracking store MLflow accepts, without changing it.

The only module that reads from MLflow. It opens the store, resolves the experiment, fetches runs as
plain records (see `mlviz.sweep.build_sweep`) and metric histories in bulk:

- SQL stores: one `get_metric_history_bulk` query per metric for all runs, on MLflow's own store object.
- HTTP servers: the server's `metrics/get-history-bulk` endpoint, 100 runs a call, calls in parallel
  (it returns full histories, up to 25,000 points a call; a call that hits the cap is split).
- File stores: `get_metric_history` per run, in a thread pool.

Stores are never modified by reading: an SQLite file whose schema is older than this MLflow's is read
from a temporary copy (MLflow would otherwise migrate it in place), a missing SQLite file is an error
rather than a new empty store, and the `.trash` folder MLflow creates in a file store is removed again.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from mlviz.errors import MlvizError
from mlviz.text import first_line

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_RUN_DIR_RE = re.compile(r"^[0-9a-f]{32}$")
_BULK_CAP = 25000
_BULK_RUNS = 100


def _record(run) -> dict:
    """An MLflow Run as the plain record `mlviz.sweep.build_sweep` reads."""
    info, data = run.info, run.data
    return {"run_id": info.run_id, "run_name": info.run_name, "experiment_id": info.experiment_id,
            "status": info.status, "lifecycle_stage": info.lifecycle_stage, "start_time": info.start_time,
            "end_time": info.end_time, "params": dict(data.params), "metrics": dict(data.metrics),
            "tags": dict(data.tags)}


def _extremes(run, key, step, value, ts) -> list[tuple[int, int, float, float]]:
    """(run, key, min, max) of each run and key in these columns, NaN values ignored (NaN when all are)."""
    import numpy as np

    if not len(run):
        return []
    order = np.lexsort((key, run))
    run, key, value = run[order], key[order], value[order]
    starts = np.flatnonzero(np.r_[True, (run[1:] != run[:-1]) | (key[1:] != key[:-1])])
    with np.errstate(invalid="ignore"):
        lo, hi = np.fmin.reduceat(value, starts), np.fmax.reduceat(value, starts)
    return list(zip(run[starts].tolist(), key[starts].tolist(), lo.tolist(), hi.tolist(), strict=True))


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@dataclass
class ExperimentInfo:
    experiment_id: str
    name: str
    artifact_location: str


class Store:
    """A tracking store opened for reading (and, through `client`, for `mlviz.store.write.Writer`)."""

    HTTP_PAGE = 1000  # runs per search_runs request over HTTP (see _page_size)

    def __init__(self, tracking_uri: str | None = None, create: bool = False):
        """`create`: a missing SQLite file or mlruns folder is made (for commands that write a new store);
        otherwise it is an error, never a new empty store."""
        self.uri = self._normalise(tracking_uri or default_tracking_uri())
        self.create = create
        self.kind = self._kind(self.uri)
        self.writable = True
        self.read_only_reason: str | None = None
        self._tempdir: str | None = None
        self._trash_existed: bool | None = None
        self._read_uri = self.uri
        self._prepare()
        import logging

        from mlflow import MlflowClient

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # migration chatter on temp copies
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

        self.read_client = MlflowClient(tracking_uri=self._read_uri)
        self.client = self.read_client if self._read_uri == self.uri else None

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _normalise(uri: str) -> str:
        if "://" not in uri and not uri.startswith("file:"):
            path = Path(uri).expanduser()
            if path.suffix == ".db" or (path.is_file() and path.read_bytes()[:15] == b"SQLite format 3"):
                return "sqlite:///" + str(path.resolve())
            return "file://" + str(path.resolve())
        return uri

    @staticmethod
    def _kind(uri: str) -> str:
        kinds = {"http": "http", "https": "http", "sqlite": "sqlite", "file": "file", "databricks": "remote",
                 "uc": "remote"}
        return kinds.get(urlparse(uri).scheme.lower(), "sql")

    def _sqlite_path(self) -> Path:
        raw = self.uri[len("sqlite:///") :] if self.uri.startswith("sqlite:///") else self.uri.split(":", 1)[1]
        return Path(unquote(raw))

    def _file_root(self) -> Path:
        parsed = urlparse(self.uri)
        return Path(unquote(parsed.path if parsed.netloc in ("", "localhost") else parsed.netloc + parsed.path))

    def _prepare(self) -> None:
        if self.kind == "sqlite":
            path = self._sqlite_path()
            if str(path) in (":memory:", ""):
                raise MlvizError("an in-memory SQLite store holds no runs; pass a file, e.g. sqlite:///mlflow.db")
            if not path.is_file():
                if not self.create:
                    raise MlvizError(f"no MLflow store at {path} (the SQLite file does not exist)")
                if not path.parent.is_dir():
                    raise MlvizError(f"cannot create the MLflow store {path}: the folder {path.parent} does not exist")
                return  # MLflow creates it, at the current schema, on first use
            self._check_sqlite_schema(path)
        elif self.kind == "file":
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
            root = self._file_root()
            if not root.is_dir():
                if not self.create:
                    raise MlvizError(f"no MLflow store at {root} (the folder does not exist)")
                root.mkdir(parents=True)
            self._trash_existed = (root / ".trash").exists()
            # MLflow's FileStore creates .trash when it is built, and MLflow caches that store per URI: after
            # close() removed the folder, a second open in this process would get the cached store and fail
            # on the missing folder. So every open makes sure it is there, and close() removes it again.
            with contextlib.suppress(OSError):  # a read-only store: MLflow reads it without .trash too
                (root / ".trash").mkdir(exist_ok=True)
            self._skip_invalid_run_folders(root)
        elif self.kind == "http":
            self._check_server()

    def _skip_invalid_run_folders(self, root: Path) -> None:
        """MLflow's FileStore skips a run folder without meta.yaml but fails the whole search on one whose
        meta.yaml does not parse (a half-copied or hand-edited mlruns). When there is such a folder, read
        through a temporary shadow of the store that links every other folder (nothing is copied or
        changed), and refuse to log: MLflow could not search the real store to find the analysis run."""
        import yaml

        bad = []
        for exp in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for run in (p for p in exp.iterdir() if p.is_dir() and _RUN_DIR_RE.match(p.name)):
                meta = run / "meta.yaml"
                if not meta.is_file():
                    continue
                try:
                    if not isinstance(yaml.safe_load(meta.read_text(encoding="utf-8")), dict):
                        bad.append(run)
                except (yaml.YAMLError, OSError, UnicodeDecodeError):
                    bad.append(run)
        if not bad:
            return
        self._tempdir = tempfile.mkdtemp(prefix="mlviz-store-")
        shadow = Path(self._tempdir) / "mlruns"
        skip = set(bad)
        for item in root.iterdir():
            if item.name == ".trash":
                continue
            if not item.is_dir():
                (shadow / item.name).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(item, shadow / item.name)
                continue
            (shadow / item.name).mkdir(parents=True)
            for sub in item.iterdir():
                if sub not in skip:
                    os.symlink(sub, shadow / item.name / sub.name)
        self._read_uri = shadow.as_uri()
        self.writable = False
        self.read_only_reason = (f"run folder {bad[0].relative_to(root)} has an unreadable meta.yaml, so MLflow "
                                 "cannot search this store; fix or move it, or use --out DIR")

    def _check_sqlite_schema(self, path: Path) -> None:
        try:
            con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)  # as_uri escapes '#', '?', '%'
            try:
                tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
                version = None
                if "alembic_version" in tables:
                    row = con.execute("select version_num from alembic_version").fetchone()
                    version = row[0] if row else None
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise MlvizError(f"{path} is not an MLflow SQLite store ({first_line(exc)})") from None
        if "runs" not in tables or "experiments" not in tables:
            raise MlvizError(f"{path} is not an MLflow SQLite store (no runs/experiments tables)")
        from mlflow.store.db.utils import _get_latest_schema_revision

        head = _get_latest_schema_revision()
        if version != head:
            # MLflow migrates an old schema in place when it opens it; read a copy instead.
            self._tempdir = tempfile.mkdtemp(prefix="mlviz-store-")
            copy = Path(self._tempdir) / path.name
            shutil.copy2(path, copy)
            self._read_uri = "sqlite:///" + str(copy)
            self.writable = False
            self.read_only_reason = (f"its schema ({version}) is older than this MLflow's ({head}); logging "
                                     f"would migrate it. Run `mlflow db upgrade {self.uri}` first (after a "
                                     "backup), or use --out DIR")

    def _check_server(self) -> None:
        import requests

        try:
            resp = requests.get(self.uri.rstrip("/") + "/health", timeout=5)
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise MlvizError(f"cannot reach the tracking server at {self.uri} ({reason})") from None
        if resp.status_code >= 400 and resp.status_code != 404:
            raise MlvizError(f"the tracking server at {self.uri} answered HTTP {resp.status_code} to /health")

    def close(self) -> None:
        """Undo what merely opening the store did (a temp copy, an empty `.trash` folder)."""
        if self._tempdir:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
        if self.kind == "file" and self._trash_existed is False:
            trash = self._file_root() / ".trash"
            if trash.is_dir() and not any(trash.iterdir()):
                trash.rmdir()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ experiments
    @contextlib.contextmanager
    def _reading(self, missing: str | None = None):
        """MLflow calls inside: their warnings said in one line each (mlviz.store.quiet); an MlflowException
        as one line: a failure outside mlviz (mlviz.store.faults), else `missing` (else MLflow's message)."""
        from mlflow.exceptions import MlflowException

        from mlviz.store.faults import fault
        from mlviz.store.quiet import capture

        try:
            with capture(self):
                yield
        except MlflowException as exc:
            err = fault(exc, self.uri, "reading the store")
            raise (err or MlvizError(missing or first_line(exc))) from None

    def _call(self, fn, *args, **kwargs):
        """An MLflow call inside `_reading`; a network error is one line too."""
        from mlviz.store.faults import fault

        try:
            with self._reading():
                return fn(*args, **kwargs)
        except OSError as exc:  # requests' errors are OSErrors too
            err = fault(exc, self.uri, "reading the store")
            if err is None:
                raise
            raise err from None

    def experiments(self) -> list[ExperimentInfo]:
        exps = self._call(self.read_client.search_experiments)
        return [ExperimentInfo(e.experiment_id, e.name, e.artifact_location) for e in exps]

    def experiment(self, name_or_id: str | None, parent_run: str | None = None) -> ExperimentInfo:
        """Resolve an experiment by name, then by id; guess it when the store leaves no doubt."""
        from mlflow.exceptions import MlflowException

        from mlviz.store.faults import fault
        from mlviz.store.quiet import capture

        client = self.read_client
        if name_or_id is None:
            if parent_run is not None and _RUN_DIR_RE.match(parent_run):
                with self._reading(f"parent run '{parent_run}' is not in this store"):
                    e = client.get_experiment(client.get_run(parent_run).info.experiment_id)
                return ExperimentInfo(e.experiment_id, e.name, e.artifact_location)
            with_runs = [e for e in self.experiments()
                         if self._call(client.search_runs, [e.experiment_id], max_results=1)]
            if len(with_runs) == 1:
                return with_runs[0]
            names = ", ".join(f"'{e.name}'" for e in with_runs) or "none has runs"
            raise MlvizError(f"pass --experiment: this store has several experiments with runs ({names})")
        exp = None
        try:
            with capture(self):
                exp = client.get_experiment_by_name(name_or_id)
                if exp is None and str(name_or_id).isdigit():
                    exp = client.get_experiment(str(name_or_id))
        except MlflowException as exc:
            err = fault(exc, self.uri, "reading the store")
            if err is not None:
                raise err from None
            exp = None
        if exp is None:
            names = ", ".join(f"'{e.name}'" for e in self.experiments()[:15])
            raise MlvizError(f"no experiment named or numbered '{name_or_id}' in {self.uri} (found: {names})")
        if exp.lifecycle_stage == "deleted":
            raise MlvizError(f"experiment '{exp.name}' is deleted; restore it first")
        return ExperimentInfo(exp.experiment_id, exp.name, exp.artifact_location)

    # ------------------------------------------------------------------ runs
    def run_records(self, experiment_ids: Sequence[str], filter_string: str = "") -> tuple[list[dict], list]:
        """All runs of the experiments (deleted ones too, so they can be counted) as plain records, and
        (run folder, why) of those MLflow could not read; on an SQL store without a filter by plain SQL
        (`_run_records_sql`: the same records, 100,000 runs in seconds)."""
        if not filter_string:
            fast = self._run_records_sql(experiment_ids)
            if fast is not None:
                return fast, []
        return self._run_records_search(experiment_ids, filter_string)

    def _run_records_search(self, experiment_ids: Sequence[str], filter_string: str = "") -> tuple[list[dict], list]:
        """`run_records` through MLflow's search_runs (any store, any filter)."""
        from mlflow.entities import ViewType

        records: list[dict] = []
        token = None
        while True:
            page = self._call(self.read_client.search_runs, list(experiment_ids), max_results=self._page_size,
                              filter_string=filter_string or "", run_view_type=ViewType.ALL, page_token=token)
            for run in page:
                record = _record(run)
                record["run_name"] = record["run_name"] or run.data.tags.get("mlflow.runName")
                records.append(record)
            token = page.token
            if not token:
                break
        unreadable = self._unreadable_runs(experiment_ids, {r["run_id"] for r in records}, filter_string)
        return records, unreadable

    @property
    def _page_size(self) -> int:
        """Runs per search_runs call: MLflow's largest page in process; over HTTP MLflow's default page, since
        the server builds and serialises a page in one go (a 50,000-run page of a 100,000-run sweep took
        minutes, and uvicorn killed the busy workers when they missed its 5 s health check)."""
        return self.HTTP_PAGE if self.kind == "http" else 50000

    def _unreadable_runs(self, experiment_ids, seen: set[str], filter_string: str) -> list[tuple[str, str]]:
        """(run folder, why) for run folders of a file store that MLflow could not read (it skips them
        with a warning)."""
        if self.kind != "file" or filter_string:
            return []
        out = []
        root = self._file_root()
        for exp_id in experiment_ids:
            for folder in (root / str(exp_id)).iterdir() if (root / str(exp_id)).is_dir() else []:
                if folder.is_dir() and _RUN_DIR_RE.match(folder.name) and folder.name not in seen:
                    why = "meta.yaml missing" if not (folder / "meta.yaml").exists() else "meta.yaml invalid"
                    out.append((folder.name, f"unreadable: {why}"))
        return out

    # ------------------------------------------------------------------ artifacts
    def run(self, run_id: str) -> dict:
        """One run as a plain record (as in `run_records`)."""
        with self._reading(f"no run '{run_id}' in {self.uri}"):
            run = self.read_client.get_run(run_id)
        return {**_record(run), "artifact_uri": run.info.artifact_uri}

    def artifact_paths(self, run_id: str, folder: str = "") -> list[str]:
        """Files logged by a run under `folder` (recursively); empty when the location is unreachable."""
        moved = self.relocated(run_id)
        if moved is not None:
            return self._local_paths(moved, folder)
        from mlviz.store.faults import fault, is_unreachable
        from mlviz.store.quiet import capture

        out, stack = [], [folder or None]
        try:
            with capture(self):
                while stack:
                    for f in self.read_client.list_artifacts(run_id, stack.pop()):
                        (stack.append(f.path) if f.is_dir else out.append(f.path))
        except Exception as exc:  # noqa: BLE001 - an artifact store we cannot list has nothing for us
            err = fault(exc, self.uri, "listing artifacts")
            if err is not None and is_unreachable(err):  # but a lost server is not an empty run
                raise err from None
            return []
        return sorted(out)

    def download(self, run_id: str, path: str, dst: str | Path) -> Path:
        """Download one artifact (file or folder) of a run into `dst`."""
        from mlviz.store.faults import fault
        from mlviz.store.quiet import capture

        moved = self.relocated(run_id)
        try:
            if moved is not None:
                return self._copy_local(moved, path, Path(dst))
            with capture(self):
                return Path(self.read_client.download_artifacts(run_id, path, str(dst)))
        except MlvizError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise (fault(exc, self.uri, f"downloading '{path}' of run {run_id}")
                   or MlvizError(f"cannot download '{path}' of run {run_id}: {first_line(exc)}")) from None

    # ------------------------------------------------------------------ stores that moved
    def _store_folder(self) -> Path | None:
        """The folder a moved store carries its artifacts in: a file store's root, an SQLite file's folder."""
        if self.kind == "file":
            return self._file_root()
        if self.kind == "sqlite":
            return self._sqlite_path().resolve().parent
        return None

    def relocated(self, run_id: str) -> Path | None:
        """The run's artifact folder inside the store's own folder, when the recorded local location does
        not exist here (a store copied from the machine that wrote it); None when the recorded one is used.

        The recorded path's tail that names the run (e.g. `14/<run>/artifacts` of
        `/NOBACKUP/u/mlruns/14/<run>/artifacts`, or `mlruns/14/<run>/artifacts` beside an SQLite file) is
        looked up under the store's folder, longest tail first. Nothing is written to the store."""
        cache = self.__dict__.setdefault("_relocations", {})
        if run_id in cache:
            return cache[run_id]
        cache[run_id] = found = self._find_relocated(run_id)
        if found is not None and not self.__dict__.get("_said_relocated"):
            self._said_relocated = True
            import sys

            recorded = self.run(run_id)["artifact_uri"]
            print(f"mlviz: note: artifact locations recorded in this store (e.g. {recorded}) do not exist here; "
                  f"reading them from the store's own folder {self._store_folder()} (the store was moved)",
                  file=sys.stderr)
        return found

    def _find_relocated(self, run_id: str) -> Path | None:
        base = self._store_folder()
        if base is None:
            return None
        try:
            uri = self.read_client.get_run(run_id).info.artifact_uri
        except Exception:  # noqa: BLE001 - an unknown run: MLflow's own call says so
            return None
        parsed = urlparse(uri or "")
        if parsed.scheme not in ("", "file") or (parsed.netloc not in ("", "localhost")):
            return None
        recorded = Path(unquote(parsed.path))
        if recorded.exists() or run_id not in recorded.parts:
            return None
        parts = [p for p in recorded.parts if p not in (recorded.anchor, "", ".", "..")]
        first = parts.index(run_id)
        base = base.resolve()
        for i in range(first + 1):
            candidate = base.joinpath(*parts[i:])
            if candidate.is_dir() and candidate.resolve().is_relative_to(base):
                return candidate
        return None

    @staticmethod
    def _local_paths(root: Path, folder: str) -> list[str]:
        start = (root / folder) if folder else root
        if not start.resolve().is_relative_to(root.resolve()) or not start.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in start.rglob("*") if p.is_file())

    @staticmethod
    def _copy_local(root: Path, path: str, dst: Path) -> Path:
        """Copy an artifact (file or folder) of a moved store's run folder into `dst`, as MlflowClient's
        download lays it out (dst/<its name>)."""
        src = root / path
        if not src.resolve().is_relative_to(root.resolve()) or not src.exists():
            raise MlvizError(f"cannot download '{path}': no such artifact in {root}")
        target = dst / src.name
        dst.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)
        return target

    # ------------------------------------------------------------------ histories
    def histories(self, run_ids: Sequence[str], keys: Iterable[str], workers: int = 8, progress=None,
                  extremes: bool = False):
        """Full metric histories as a long table: run_id, key, step, value, timestamp.

        `progress(total)`: makes a bar (with update(n) and close()) for the requests about to be sent.
        `extremes`: instead, {(run_id, key): (min, max)} of each history (NaN ignored), reduced where the
        points are: by the database on SQL stores, each bulk answer as it arrives over HTTP (memory per run,
        not per point: 30 M points took 7 GB as a table); None on other stores (reduce the table)."""
        run_ids, keys = list(dict.fromkeys(run_ids)), list(dict.fromkeys(keys))
        self._bar = None
        if extremes and self.kind != "http":
            return self._history_extremes_sql(run_ids, keys)
        if not run_ids or not keys:
            return {} if extremes else self._histories_frame([])
        store = self._sql_store()  # the only MLflow store with get_metric_history_bulk
        chunk = _BULK_RUNS if self.kind == "http" else 500 if store is not None else 1
        if progress is not None:
            self._bar = progress(len(keys) * -(-len(run_ids) // chunk))
        try:
            if self.kind == "http":
                return self._histories_http(run_ids, keys, workers, extremes)
            if store is not None:
                return self._histories_sql_columns(store, run_ids, keys)
            return self._histories_frame(self._histories_per_run(run_ids, keys, workers))
        finally:
            if self._bar is not None:
                self._bar.close()
            self._bar = None

    def _sql_store(self):
        """MLflow's own store object when it is an SQL store read through SQLAlchemy, else None."""
        store = getattr(getattr(self.read_client, "_tracking_client", None), "store", None)
        return store if self.kind in ("sqlite", "sql") and hasattr(store, "engine") else None

    @staticmethod
    def _histories_frame(rows: list[tuple]) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])
        return frame.sort_values(["run_id", "key", "step", "timestamp"], kind="mergesort").reset_index(drop=True)

    def _run_records_sql(self, experiment_ids: Sequence[str]) -> list[dict] | None:
        """`run_records`' records (all runs, deleted ones too, no filter) by plain SQL on MLflow's runs,
        params, tags and latest_metrics tables: the same records as `search_runs` gives, in its order
        (newest first), without building an ORM object per row, through the driver's own cursor (100,000
        runs: seconds, not minutes). None when the store is not an SQL store MLflow reads through SQLAlchemy."""
        store = self._sql_store()
        if store is None:
            return None
        exps = ", ".join(str(int(e)) for e in experiment_ids) or "NULL"  # integers: safe to write inline
        # a join (scan the table, look each row's run up) rather than `run_uuid IN (SELECT ...)` (an index
        # lookup per run, in random order): ~3x faster on SQLite when the experiment holds most runs
        join = f"t JOIN runs r ON r.run_uuid = t.run_uuid WHERE r.experiment_id IN ({exps})"
        records: dict[str, dict] = {}
        with store.engine.connect() as con:
            cursor = con.connection.dbapi_connection.cursor()

            def q(sql):
                def run():
                    cursor.execute(sql)
                    return cursor.fetchall()

                return self._call(run)

            for (rid, name, exp, status, stage, start, end) in q(
                    "SELECT run_uuid, name, experiment_id, status, lifecycle_stage, start_time, end_time FROM runs "
                    f"WHERE experiment_id IN ({exps}) ORDER BY start_time DESC, run_uuid"):
                records[rid] = {"run_id": rid, "run_name": name, "experiment_id": str(exp), "status": status,
                                "lifecycle_stage": stage, "start_time": start, "end_time": end, "params": {},
                                "metrics": {}, "tags": {}}
            for key, value, rid in q(f"SELECT t.key, t.value, t.run_uuid FROM params {join}"):
                records[rid]["params"][key] = value
            for key, value, rid in q(f"SELECT t.key, t.value, t.run_uuid FROM tags {join}"):
                records[rid]["tags"][key] = value
            for key, value, is_nan, rid in q(f"SELECT t.key, t.value, t.is_nan, t.run_uuid FROM latest_metrics {join}"):
                records[rid]["metrics"][key] = float("nan") if is_nan else value
            cursor.close()
        for r in records.values():
            r["run_name"] = r["run_name"] or r["tags"].get("mlflow.runName")
        return list(records.values())

    def _history_extremes_sql(self, run_ids, keys) -> dict[tuple[str, str], tuple[float, float]] | None:
        """{(run_id, key): (min, max)} of each history, NaN points ignored (NaN when all are), computed by the
        database (MIN/MAX ... GROUP BY): what `--final best` needs, without moving every point into Python
        (30 M points at 100,000 runs). None when the store is not an SQL store read through SQLAlchemy."""
        store = self._sql_store()
        if store is None:
            return None
        sql = ("SELECT run_uuid, key, MIN(CASE WHEN is_nan THEN NULL ELSE value END), MAX(CASE WHEN is_nan "
               "THEN NULL ELSE value END) FROM metrics WHERE run_uuid IN :ids AND key || '' IN :keys "
               "GROUP BY run_uuid, key")
        ids, names = list(dict.fromkeys(run_ids)), list(dict.fromkeys(keys))
        nan = float("nan")
        out: dict[tuple[str, str], tuple[float, float]] = {}
        for _, _, rows in self._metric_queries(store, sql, ids, names):
            for rid, key, lo, hi in rows:
                out[(rid, key)] = (nan if lo is None else float(lo), nan if hi is None else float(hi))
        return out

    def _metric_queries(self, store, sql: str, ids: list[str], names: list[str]):
        """(offset, run ids, rows) of `sql` (on MLflow's metrics table, with :ids and :keys) per 500 runs."""
        from sqlalchemy import bindparam, text

        query = text(sql).bindparams(bindparam("ids", expanding=True), bindparam("keys", expanding=True))
        with store.engine.connect() as con:
            for c in range(0, len(ids), 500):
                chunk = ids[c : c + 500]
                rows = self._call(lambda ch=chunk: con.execute(query, {"ids": ch, "keys": names}).all())
                yield c, chunk, rows

    def _histories_sql_columns(self, store, run_ids, keys) -> pd.DataFrame:
        """`histories` on an SQL store by plain SQL on MLflow's metrics table, straight into columns: no
        MLflow entity or tuple per point is kept (30 M points take ~1 GB, not tens). One query per 500 runs
        for all keys, through the run_uuid index (`key || ''` keeps the database off the primary key, which
        starts with the key and would scan every run's points of that key); each chunk is ordered here, so
        the frame comes out in `histories`' order (run_id, key, step, timestamp) without a global sort, and
        a run id or key is one shared string."""
        import numpy as np

        ids, names = sorted(run_ids), sorted(keys)
        sql = ("SELECT run_uuid, key, step, value, timestamp, is_nan FROM metrics WHERE run_uuid IN :ids "
               "AND key || '' IN :keys")
        parts: list[tuple[np.ndarray, ...]] = []
        for c, chunk, rows in self._metric_queries(store, sql, ids, names):
            for _ in names:
                self._tick()
            if not rows:
                continue
            cols = pd.DataFrame.from_records(rows, columns=["run", "key", "step", "value", "ts", "nan"])
            run = pd.Categorical(cols["run"], categories=chunk).codes.astype(np.int64) + c
            key = pd.Categorical(cols["key"], categories=names).codes.astype(np.int64)
            step, ts = cols["step"].to_numpy(np.int64), cols["ts"].to_numpy(np.int64)
            value = cols["value"].to_numpy(dtype=float, copy=True)
            value[cols["nan"].to_numpy(dtype=bool)] = np.nan
            order = np.lexsort((value, ts, step, key, run))
            parts.append((run[order], key[order], step[order], value[order], ts[order]))
        if not parts:
            return self._histories_frame([])
        return self._coded_frame(ids, names, *(np.concatenate([p[i] for p in parts]) for i in range(5)))

    @staticmethod
    def _coded_frame(ids, names, run, key, step, value, ts) -> pd.DataFrame:
        """The histories frame from columns that hold run and key as indices into `ids` and `names`."""
        import numpy as np

        return pd.DataFrame({"run_id": np.asarray(ids, dtype=object)[run],
                             "key": np.asarray(names, dtype=object)[key], "step": step, "value": value,
                             "timestamp": ts})

    def _tick(self) -> None:
        if getattr(self, "_bar", None) is not None:
            self._bar.update(1)

    def _histories_per_run(self, run_ids, keys, workers) -> list[tuple]:
        def one(job):
            run_id, key = job
            hist = self._call(self.read_client.get_metric_history, run_id, key)
            self._tick()
            return [(run_id, m.key, m.step, m.value, m.timestamp) for m in hist]

        jobs = [(r, k) for r in run_ids for k in keys]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return [row for part in pool.map(one, jobs) for row in part]

    def _histories_http(self, run_ids, keys, workers, extremes: bool = False):
        """The bulk endpoint's answers, each turned into columns as it arrives (run and key as indices into
        the sorted names): memory ~30 bytes a point instead of a tuple of Python objects (~150); with
        `extremes`, each answer reduced to its runs' (min, max) as it arrives."""
        import numpy as np
        from mlflow.exceptions import MlflowException
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        creds = get_default_host_creds(self.uri)
        endpoint = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"

        def fetch(chunk: list[str], key: str) -> list[tuple]:
            params = {"run_id": chunk, "metric_key": key, "max_results": _BULK_CAP}
            resp = http_request(creds, endpoint, "GET", params=params)
            if resp.status_code == 404:
                raise LookupError("no bulk endpoint")
            if resp.status_code != 200:
                raise MlvizError(f"the tracking server refused a metric-history request: HTTP {resp.status_code}")
            metrics = resp.json().get("metrics", [])
            if len(metrics) >= _BULK_CAP:  # truncated: split the chunk, or page one long run
                if len(chunk) == 1:
                    hist = self.read_client.get_metric_history(chunk[0], key)
                    return [(chunk[0], m.key, m.step, m.value, m.timestamp) for m in hist]
                half = len(chunk) // 2
                return fetch(chunk[:half], key) + fetch(chunk[half:], key)
            return [(m["run_id"], m["key"], int(m.get("step", 0)), float(m["value"]),
                     int(m.get("timestamp", 0))) for m in metrics]

        ids, names = sorted(run_ids), sorted(keys)
        run_pos, key_pos = {r: i for i, r in enumerate(ids)}, {k: i for i, k in enumerate(names)}

        def fetch_job(chunk: list[str], key: str) -> tuple[np.ndarray, ...]:
            out = fetch(chunk, key)
            self._tick()
            cols = (np.fromiter((run_pos[r[0]] for r in out), np.int64, len(out)),
                    np.fromiter((key_pos[r[1]] for r in out), np.int64, len(out)),
                    np.fromiter((r[2] for r in out), np.int64, len(out)),
                    np.fromiter((r[3] for r in out), float, len(out)),
                    np.fromiter((r[4] for r in out), np.int64, len(out)))
            return _extremes(*cols) if extremes else cols

        jobs = [(run_ids[i : i + _BULK_RUNS], k) for k in keys for i in range(0, len(run_ids), _BULK_RUNS)]
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(lambda j: fetch_job(*j), jobs))
        except (LookupError, MlflowException):
            return None if extremes else self._histories_frame(self._histories_per_run(run_ids, keys, workers))
        if extremes:  # each (run, key) lies in one job: the jobs' extremes are the extremes
            return {(ids[r], names[k]): (lo, hi) for part in parts for r, k, lo, hi in part}
        run, key, step, value, ts = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64)
                                     for i in range(5))
        order = np.lexsort((ts, step, key, run))  # stable, as the sort of `_histories_frame`
        if not len(order):
            return self._histories_frame([])
        return self._coded_frame(ids, names, run[order], key[order], step[order], value[order].astype(float),
                                 ts[order])
