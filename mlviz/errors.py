"""Errors a user can fix: the CLI turns them into one line and exit code 2, never a traceback."""

from __future__ import annotations

import errno as _errno


class MlvizError(Exception):
    """Bad input or an unusable store; the message is shown to the user as is."""


class Fault(MlvizError):
    """A failure outside mlviz (a lost tracking server, a full disk, a run deleted meanwhile): one line as
    well. `kind`: "network", "timeout", "deleted", "disk" or "os"."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind

    @property
    def unreachable(self) -> bool:
        """Nothing more can be written to the store now (its server is gone or silent)."""
        return self.kind in ("network", "timeout")


# A full disk, a file-size limit (ulimit -f), a quota or a read-only mount: the user frees space or points
# mlviz elsewhere, and the next run redoes the work.
DISK_FULL = {_errno.ENOSPC, _errno.EFBIG, _errno.EDQUOT, _errno.EROFS}


def os_error_line(exc: OSError) -> str:
    """'<file>: <what went wrong> (ENOSPC)' for an OSError, on one line."""
    code = _errno.errorcode.get(exc.errno or 0, "")
    what = (exc.strerror or type(exc).__name__).strip()
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{what}" + (f" ({code})" if code else "")


def disk_error(exc: BaseException, doing: str, after: str = "") -> Fault | None:
    """An MlvizError for a full disk / file-size limit / read-only folder met while `doing`; None for any
    other error (a bug, which the CLI reports as an internal error)."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_FULL:
        return None
    hint = "free some space (or set TMPDIR to a folder with room) and run again"
    if exc.errno == _errno.EROFS:
        hint = "the folder is read-only; point TMPDIR or --out elsewhere and run again"
    return Fault(f"cannot write while {doing}: {os_error_line(exc)}; {hint}" + (f"; {after}" if after else ""), "disk")
