"""What ONNX support needs installed, and the one error that says how to get it (``pip install mote[onnx]``).

Torch-free: importing this module imports nothing but the standard library.

Example:
    >>> ort, tokenizers = require("onnxruntime", "tokenizers")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

INSTALL_HINT = "pip install mote[onnx]"


def require(*modules: str) -> list[Any]:
    """Import ``modules`` or raise an ``ImportError`` that names the missing ones and the extra to install."""
    loaded, missing = [], []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"ONNX support needs {', '.join(modules)} (missing: {', '.join(missing)}). Install it with: {INSTALL_HINT}"
        )
    return loaded


def require_onnx() -> None:
    """Raise an ``ImportError`` naming ``pip install mote[onnx]`` unless everything the export needs imports."""
    require("onnx", "onnxruntime", "onnxscript", "tokenizers")
