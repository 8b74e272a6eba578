"""ONNX exports of MoTE models (``pip install mote[onnx]``), each verified against torch before it is kept.

Two exports, one idea per module:

* **per task, dense** (:mod:`mote.onnx.dense`): a dense folder from :func:`mote.export.export_dense` gets
  ``onnx/model.onnx`` (+ ``onnx/model_qint8_avx512.onnx``) laid out as sentence-transformers' ONNX backend loads it
  (``SentenceTransformer(folder, backend="onnx")``); :class:`OnnxEncoder` serves it without torch.
* **all tasks in one graph** (:mod:`mote.onnx.multitask`): ``model.onnx`` with a ``task_id`` input holding every
  expert; :class:`MultiTaskOnnxEncoder` (:mod:`mote.onnx.runtime`) serves any mix of tasks from one session.

Support modules: :mod:`~mote.onnx.verify` (the exactness check), :mod:`~mote.onnx.quantize` (int8 + its measured
quality), :mod:`~mote.onnx.texts` (verification texts), :mod:`~mote.onnx.graph` (the torch side of the dense
export), :mod:`~mote.onnx.tokens` / :mod:`~mote.onnx.session` (the torch-free inference pieces),
:mod:`~mote.onnx.files` (names and settings), :mod:`~mote.onnx.reports`, :mod:`~mote.onnx.deps`. Importing this
package imports no torch; the export functions import it when called.

Example:
    >>> report = export_onnx("minilm-query", quantize=True)                        # doctest: +SKIP
    >>> OnnxEncoder("minilm-query").encode(["how do magnets work"]).shape         # doctest: +SKIP
    (1, 384)
    >>> export_multitask("minilm-mote", "minilm-mote-onnx")                        # doctest: +SKIP
    >>> MultiTaskOnnxEncoder("minilm-mote-onnx").encode(["hi", "yo"], task=["query", "clustering"])  # doctest: +SKIP
"""

from mote.onnx.dense import export_onnx
from mote.onnx.deps import INSTALL_HINT, require_onnx
from mote.onnx.encoder import OnnxEncoder
from mote.onnx.files import (
    BATCH_SIZES,
    CONFIG_FILE,
    FORMAT_VERSION,
    INT8_FILE,
    LEGACY_INT8_FILE,
    MIN_COSINE,
    MODEL_FILE,
    ONNX_DIR,
    OUTPUT_NAMES,
    TASK_INPUT,
)
from mote.onnx.graph import load_dense
from mote.onnx.multitask import export_multitask
from mote.onnx.reports import ExportReport, Int8Quality, MultiTaskReport
from mote.onnx.runtime import MultiTaskOnnxEncoder, UnknownTaskIdError
from mote.onnx.texts import verification_texts
from mote.onnx.verify import OnnxVerificationError

__all__ = [
    "BATCH_SIZES",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "INSTALL_HINT",
    "INT8_FILE",
    "LEGACY_INT8_FILE",
    "MIN_COSINE",
    "MODEL_FILE",
    "ONNX_DIR",
    "OUTPUT_NAMES",
    "TASK_INPUT",
    "ExportReport",
    "Int8Quality",
    "MultiTaskOnnxEncoder",
    "MultiTaskReport",
    "OnnxEncoder",
    "OnnxVerificationError",
    "UnknownTaskIdError",
    "export_multitask",
    "export_onnx",
    "load_dense",
    "require_onnx",
    "verification_texts",
]
