"""Reading the user's array files safely: never unpickling, one clear line for every way it fails."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mlviz.errors import MlvizError
from mlviz.text import first_line


def load_array(path, what: str = "array") -> np.ndarray:
    """The array of an `.npy` (or the first array of an `.npz`), with `allow_pickle=False`: an object array
    is refused, not loaded."""
    p = Path(path)
    if not p.is_file():
        raise MlvizError(f"no {what} file at {p}")
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise MlvizError(f"{p.name} is not a numeric array: it holds Python objects (the {what} must be numbers)") from None
        raise MlvizError(f"cannot read {p.name}: {first_line(exc)}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MlvizError(f"cannot read {p.name}: {first_line(exc)}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if not loaded.files:
                raise MlvizError(f"{p.name} holds no arrays (the {what} is empty)")
            return loaded[loaded.files[0]]
    return loaded
