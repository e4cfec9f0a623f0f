"""Small text helpers every layer uses: file-name-safe names and one-line error messages."""

from __future__ import annotations

import re


def safe_name(value) -> str:
    """A file-name-safe form of a parameter, metric, output or sample name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value)).strip("_") or "x"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's own `.message` when it has one), for one-line errors."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__
