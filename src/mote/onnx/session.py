"""One onnxruntime session with mote's defaults (torch-free).

Example:
    >>> session = make_session("model.onnx", threads=2)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mote.onnx.deps import require


def make_session(model_file: str | os.PathLike, threads: int | None = None, providers: Sequence[str] | None = None):
    """An ``onnxruntime.InferenceSession`` (all graph optimisations; ``threads`` intra-op threads if given)."""
    (ort,) = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(model_file), options, providers=list(providers or ["CPUExecutionProvider"]))
