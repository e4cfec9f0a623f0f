"""MLflow's own warnings, said once per problem in one line (`mlviz: warning: ...`) instead of tracebacks.

While mlviz calls MLflow (`with capture(store): ...`), what MLflow and urllib3 log at WARNING or above —
including the file store's "Malformed experiment ... meta.yaml" warnings, which MLflow logs on the root
logger with a full traceback, and urllib3's "Retrying (...)" lines while a tracking server does not
answer — and the Python warnings raised meanwhile are turned into one line per distinct problem, printed
to stderr the first time it is met (so a user waiting on retries sees why). The same problem met again
(every search of a file store meets the same broken folder) is not repeated for the same store.
Records below WARNING go where they went before. Nested and concurrent `capture` blocks (reader threads)
share one installation, undone when the last block ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings

_LOCK = threading.RLock()
_DEPTH = 0
_SINKS: list[Problems] = []
_SAVED: dict = {}
_LOGGERS = ("mlflow", "urllib3")
_MALFORMED = re.compile(r"Malformed experiment '([^']*)'\. Detailed error (.*)", re.DOTALL)
_HOST = re.compile(r"host='([^']+)', port=(\d+)")


class Problems:
    """The problems met while reading or writing one store: each said once, counted after."""

    def __init__(self, where: str | None = None):
        self.where = where  # the store's URI, named in lines about its server
        self.lines: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, line: str) -> None:
        with _LOCK:
            self.counts[key] = self.counts.get(key, 0) + 1
            if key in self.lines:
                return
            self.lines[key] = line
        print(f"mlviz: warning: {line}", file=sys.stderr, flush=True)


def problems(owner) -> Problems:
    """The Problems of a store (or any object): one set per owner, so a problem is said once per store."""
    with _LOCK:
        return owner.__dict__.setdefault("_mlviz_problems", Problems(getattr(owner, "uri", None)))


@contextlib.contextmanager
def capture(owner=None):
    """Within the block, MLflow's warnings become one line per problem (see the module's doc)."""
    global _DEPTH
    sink = problems(owner) if owner is not None else Problems()
    with _LOCK:
        _SINKS.append(sink)
        if _DEPTH == 0:
            _install()
        _DEPTH += 1
    try:
        yield sink
    finally:
        with _LOCK:
            _DEPTH -= 1
            for i in range(len(_SINKS) - 1, -1, -1):
                if _SINKS[i] is sink:
                    del _SINKS[i]
                    break
            if _DEPTH == 0:
                _uninstall()


# --------------------------------------------------------------------------- what one problem reads like
def summarise(record: logging.LogRecord, where: str | None = None) -> tuple[str, str]:
    """(key, line) of a log record: the key says which records are the same problem."""
    try:
        msg = record.getMessage().strip()
    except Exception:  # noqa: BLE001 - a record whose arguments do not format
        msg = str(record.msg)
    m = _MALFORMED.match(msg)
    if m:
        exp, detail = m.group(1), m.group(2).strip().splitlines()[0]
        if "meta.yaml" in detail and "does not exist" in detail:
            path = detail.split("'")[1] if detail.count("'") >= 2 else detail
            return f"malformed:{exp}", f"experiment folder {exp} has no meta.yaml, so MLflow skips it ({path})"
        return f"malformed:{exp}", f"MLflow skips experiment folder {exp}: {_clip(detail)}"
    if record.name.startswith("urllib3") and msg.startswith("Retrying"):
        host = _HOST.search(msg.replace("\\'", "'"))
        where = f"{host.group(1)}:{host.group(2)}" if host else (where or "the tracking server")
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
        return f"retry:{where}", (f"no answer from {where}; MLflow's client is retrying "
                                  f"(MLFLOW_HTTP_REQUEST_MAX_RETRIES={retries}, with backoff)")
    line = _clip(msg.splitlines()[0] if msg else record.levelname)
    return f"log:{line}", f"MLflow: {line}"


def _clip(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _sink() -> Problems | None:
    with _LOCK:
        return _SINKS[-1] if _SINKS else None


def _report(record: logging.LogRecord) -> None:
    sink = _sink()
    if sink is not None:
        sink.add(*summarise(record, sink.where))


# --------------------------------------------------------------------------- the installation
_MLFLOW_DIR = None


def _from_mlflow(record: logging.LogRecord) -> bool:
    global _MLFLOW_DIR
    if record.name.split(".")[0] in _LOGGERS:
        return True
    if _MLFLOW_DIR is None:
        mod = sys.modules.get("mlflow")
        _MLFLOW_DIR = os.path.dirname(getattr(mod, "__file__", "") or "") + os.sep if mod else ""
    return bool(_MLFLOW_DIR) and str(record.pathname).startswith(_MLFLOW_DIR)


class _Handler(logging.Handler):
    """Takes WARNING+ records of MLflow/urllib3 as problems; passes everything else to where it went."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING and _from_mlflow(record):
            _report(record)
            return
        top = record.name.split(".")[0]
        saved = _SAVED.get(top) if top in _LOGGERS else None
        handlers = saved[0] if saved else _SAVED.get("root_handlers", [])
        if not handlers and (saved is None or saved[1]):  # went to the last-resort handler before
            handlers = [logging.lastResort] if logging.lastResort else []
        for h in handlers:
            if h is not self and record.levelno >= h.level:
                h.handle(record)


class _RootFilter(logging.Filter):
    """MLflow's file store logs on the root logger (`logging.warning(..., exc_info=True)`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and _from_mlflow(record):
            _report(record)
            return False
        return True


_HANDLER = _Handler()
_FILTER = _RootFilter()


def _showwarning(message, category, filename, lineno, file=None, line=None):
    text = _clip(str(message).strip().splitlines()[0] if str(message).strip() else category.__name__)
    sink = _sink()
    if sink is not None:
        sink.add(f"warn:{category.__name__}:{text}", f"{category.__name__}: {text}")


def _install() -> None:
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        _SAVED[name] = (list(lg.handlers), lg.propagate)
        lg.handlers = [_HANDLER]
        lg.propagate = False
    root = logging.getLogger()
    _SAVED["root_handlers"] = list(root.handlers)
    root.addFilter(_FILTER)
    if not root.handlers:  # else logging.warning() would install a stderr handler for good (basicConfig)
        root.addHandler(_HANDLER)
    _SAVED["showwarning"] = warnings.showwarning
    warnings.showwarning = _showwarning


def _uninstall() -> None:
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        handlers, propagate = _SAVED.pop(name, ([], True))
        lg.handlers = [h for h in lg.handlers if h is not _HANDLER] + [h for h in handlers if h not in lg.handlers]
        lg.propagate = propagate
    root = logging.getLogger()
    root.removeFilter(_FILTER)
    if _HANDLER in root.handlers:
        root.removeHandler(_HANDLER)
    _SAVED.pop("root_handlers", None)
    if warnings.showwarning is _showwarning:
        warnings.showwarning = _SAVED.pop("showwarning", warnings.showwarning)
    else:
        _SAVED.pop("showwarning", None)
