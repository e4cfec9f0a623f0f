"""What went wrong when an MLflow call failed for a reason outside mlviz, said in one line.

A tracking server that stopped or does not answer, a disk that is full, a run deleted by someone else
while mlviz worked on it: each becomes an `MlvizError` with one line that says what was being done and
what the user can do, instead of a traceback. Anything else is left alone (a bug stays a bug).

MLflow's REST client already retries every HTTP request (tracking calls and proxied artifact uploads
and downloads alike: urllib3's Retry on connection errors, read errors and HTTP 429/500/502/503/504,
MLFLOW_HTTP_REQUEST_MAX_RETRIES times, default 7, backoff MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, default
2 s doubling, each try limited by MLFLOW_HTTP_REQUEST_TIMEOUT, default 120 s), so mlviz adds no retry of
its own over HTTP: a second layer would multiply the waiting. What reaches mlviz has been retried.
"""

from __future__ import annotations

import errno
import re

from mlviz.errors import DISK_FULL, Fault, MlvizError, disk_error, os_error_line

_DELETED = re.compile(r"run '?([0-9a-f]{32})'? must be in the 'active' state", re.IGNORECASE)
_REASONS = (  # text in the underlying error -> what the user reads
    ("connection refused", "connection refused"),
    ("remotedisconnected", "the server closed the connection"),
    ("connection aborted", "the server closed the connection"),
    ("connection reset", "connection reset"),
    ("broken pipe", "the server closed the connection"),
    ("name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
)


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and all(exc is not e for e in out) and len(out) < 12:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _is_timeout(e: BaseException) -> bool:
    name = type(e).__name__
    return isinstance(e, TimeoutError) or name in ("ReadTimeout", "ConnectTimeout", "Timeout", "ReadTimeoutError",
                                                   "ConnectTimeoutError")


def network_reason(exc: BaseException) -> str | None:
    """'ConnectionError: connection refused', 'ReadTimeout: no answer in time', ... when `exc` or what
    caused it is a network failure; None otherwise."""
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    for e in chain:
        if _is_timeout(e) or (type(e).__name__ == "MlflowException" and "timeout exception" in str(e)):
            return f"{type(e).__name__ if _is_timeout(e) else 'Timeout'}: no answer in time"
    for e in chain:
        module = type(e).__module__ or ""
        if isinstance(e, ConnectionError) or (
                module.startswith(("requests", "urllib3")) and "Connection" in type(e).__name__):
            why = next((said for needle, said in _REASONS if needle in text), "no connection")
            return f"{type(e).__name__}: {why}"
    # MLflow wraps the requests error in a message only ("API request to ... failed with exception ...")
    if "api request to" in text and ("max retries exceeded" in text or "connection" in text):
        if "timed out" in text or "timeout" in text:
            return "Timeout: no answer in time"
        why = next((said for needle, said in _REASONS if needle in text), "no connection")
        return f"ConnectionError: {why}"
    return None


def deleted_run(exc: BaseException) -> str | None:
    """The id of the run MLflow refused to change because it was deleted, if that is what `exc` says."""
    for e in _chain(exc):
        m = _DELETED.search(str(getattr(e, "message", None) or e))
        if m:
            return m.group(1)
    return None


def fault(exc: BaseException, uri: str, doing: str, after: str = "") -> Fault | None:
    """One-line MlvizError for a failure outside mlviz met while `doing` ('uploading figures'), with `after`
    appended (what state the store is left in); None when `exc` is not such a failure."""
    if isinstance(exc, MlvizError):
        return None
    tail = f"; {after}" if after else ""
    reason = network_reason(exc)
    if reason is not None:
        if reason.endswith("no answer in time"):
            return Fault(f"the tracking server at {uri} did not answer while {doing} ({reason.split(':')[0]}; "
                         f"MLFLOW_HTTP_REQUEST_TIMEOUT sets how long to wait){tail}", "timeout")
        return Fault(f"lost the tracking server at {uri} while {doing} ({reason}){tail}", "network")
    run_id = deleted_run(exc)
    if run_id is not None:
        return Fault(f"run {run_id} was deleted while {doing}{tail}", "deleted")
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return disk_error(e, doing, after)
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno is not None and e.errno != errno.EINTR:
            return Fault(f"failed while {doing}: {os_error_line(e)}{tail}", "os")
    return None


def is_unreachable(err: BaseException) -> bool:
    """True for a Fault of a lost or silent tracking server (nothing more can be written there now)."""
    return isinstance(err, Fault) and err.unreachable
