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

import importlib

from mote.base_models import DEFAULT_BASE_MODEL, resolve_model_path
from mote.files import REMOVED_CLASS_PATHS, ModelFolderError, removed_class_path_message
from mote.routing import DEFAULT_TASKS, RoutingTable, UnknownTaskError

# Submodules that load on first use (``mote.lora`` is TSEmbed, with PEFT): ``mote.lora.x`` after ``import mote``
# and ``from mote import lora`` work without paying for them in ``import mote``.
_LAZY_SUBMODULES = frozenset({"export", "lora"})
_TORCH_NAMES = frozenset({"MoTETransformer", "NotAMoTEModelError", "convert", "encode", "encode_mixed", "load",
                          "mote_module"})

try:
    import torch  # noqa: F401
except ModuleNotFoundError as _missing:  # an ONNX-only install: mote.onnx's encoders run with onnxruntime alone
    if _missing.name != "torch":
        raise
    _HAVE_TORCH = False
else:
    _HAVE_TORCH = True
    from mote.adapters.sentence_transformers import register_lazy_module_class, register_removed_module_class
    from mote.api import convert, encode, encode_mixed, load, mote_module
    from mote.model import MoTETransformer, NotAMoTEModelError

    # SentenceTransformer(path) loads TLR and TSEmbed folders after `import mote`; their modules (the token-routing
    # ablation, and mote.lora with PEFT) are imported only when a folder names their class.
    register_lazy_module_class("mote.ablations.tlr.TLRTransformer", "mote.ablations.tlr:TLRTransformer")
    register_lazy_module_class("mote.lora.st.TSEmbedTransformer", "mote.lora.st:TSEmbedTransformer")
    # A folder naming a class path mote removed (mote.tlr.TLRTransformer) gets the error that names the fix.
    for _old in REMOVED_CLASS_PATHS:
        register_removed_module_class(_old, lambda old=_old: ModelFolderError(removed_class_path_message(old)))


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"mote.{name}")
    if name in _TORCH_NAMES and not _HAVE_TORCH:
        raise ImportError(
            f"mote.{name} needs torch, which is not installed (pip install torch). Without it, mote serves ONNX "
            "exports only: mote.onnx.OnnxEncoder and mote.onnx.MultiTaskOnnxEncoder."
        )
    raise AttributeError(f"module 'mote' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BASE_MODEL",
    "DEFAULT_TASKS",
    "MoTETransformer",
    "ModelFolderError",
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
