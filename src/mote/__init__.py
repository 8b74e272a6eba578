"""mote: task-specialised text embeddings with mixtures of experts (MoTE, MoEE, TSEmbed).

Example:
    >>> import mote
    >>> model = mote.convert("all-MiniLM-L6-v2", placement="every-other")   # doctest: +SKIP
    >>> model.encode(["how do magnets work"], task="query").shape           # doctest: +SKIP
    (1, 384)

Without torch installed (an ONNX-only deployment: ``pip install onnxruntime tokenizers numpy`` and
``pip install --no-deps mote``), ``import mote`` still works and ``mote.onnx.OnnxEncoder`` /
``mote.onnx.MultiTaskOnnxEncoder`` serve exports; the torch API (``mote.convert``, ``mote.load``, ...) then raises
an ``ImportError`` that says so.
"""

from mote.routing import DEFAULT_TASKS, RoutingTable, UnknownTaskError
from mote.weights import DEFAULT_BASE_MODEL, resolve_model_path

try:
    import torch  # noqa: F401
except ModuleNotFoundError as _missing:  # an ONNX-only install: mote.onnx's encoders run with onnxruntime alone
    if _missing.name != "torch":
        raise
    _TORCH_NAMES = {"MoTETransformer", "NotAMoTEModelError", "convert", "encode", "encode_mixed", "load"}
    _TORCH_NAMES.add("mote_module")

    def __getattr__(name: str):
        if name in _TORCH_NAMES:
            raise ImportError(
                f"mote.{name} needs torch, which is not installed (pip install torch). Without it, mote serves ONNX "
                "exports only: mote.onnx.OnnxEncoder and mote.onnx.MultiTaskOnnxEncoder."
            )
        raise AttributeError(f"module 'mote' has no attribute {name!r}")

else:
    import mote.lora.st  # registers TSEmbedTransformer: SentenceTransformer(path) loads TSEmbed (tsembed arm) folders
    import mote.tlr  # noqa: F401  (registers TLRTransformer so mote.load / SentenceTransformer load TLR folders)
    from mote.model import MoTETransformer, NotAMoTEModelError, convert, encode, encode_mixed, load, mote_module

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_MODEL",
    "DEFAULT_TASKS",
    "MoTETransformer",
    "NotAMoTEModelError",
    "RoutingTable",
    "UnknownTaskError",
    "convert",
    "encode",
    "encode_mixed",
    "load",
    "mote_module",
    "resolve_model_path",
]
