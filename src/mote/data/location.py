"""Locate the dataset folder: ``--data-dir``, else ``$MOTE_DATA``, else ``../shared/data`` when it exists."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "MOTE_DATA"
_DEFAULT_CANDIDATES = ("../shared/data",)


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The dataset root folder, or a ``FileNotFoundError`` that names both ways to set it.

    Example:
        >>> import os; os.environ["MOTE_DATA"] = "."; data_dir().is_dir()
        True
    """
    if explicit is not None:
        path, how = Path(explicit), "--data-dir"
    elif os.environ.get(DATA_ENV):
        path, how = Path(os.environ[DATA_ENV]), f"${DATA_ENV}"
    else:
        for cand in _DEFAULT_CANDIDATES:
            if Path(cand).is_dir():
                return Path(cand).resolve()
        raise FileNotFoundError(
            f"No dataset folder found: set ${DATA_ENV} to the folder that holds the datasets (e.g. "
            f"`export {DATA_ENV}=/path/to/shared/data`) or pass --data-dir; the default "
            f"{_DEFAULT_CANDIDATES[0]!r} does not exist relative to {Path.cwd()}."
        )
    if not path.is_dir():
        raise FileNotFoundError(
            f"Dataset folder {str(path)!r} (from {how}) does not exist: point {how} at the folder that holds the "
            f"datasets (set ${DATA_ENV} or pass --data-dir)."
        )
    return path.resolve()
