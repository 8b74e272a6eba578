"""mote: task-specialised text embeddings with mixtures of experts (MoTE, MoEE, TSEmbed).

Example:
    >>> import mote
    >>> model = mote.convert("all-MiniLM-L6-v2", placement="every-other")   # doctest: +SKIP
    >>> model.encode(["how do magnets work"], task="query").shape           # doctest: +SKIP
    (1, 384)
"""

import mote.lora.st  # registers TSEmbedTransformer: SentenceTransformer(path) loads TSEmbed (tsembed arm) folders
import mote.tlr  # noqa: F401  (registers TLRTransformer so mote.load / SentenceTransformer load TLR folders)
from mote.model import MoTETransformer, NotAMoTEModelError, convert, encode, encode_mixed, load, mote_module
from mote.routing import DEFAULT_TASKS, RoutingTable, UnknownTaskError
from mote.weights import DEFAULT_BASE_MODEL, resolve_model_path

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
