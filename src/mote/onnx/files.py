"""File names and fixed settings of mote's ONNX folders (torch-free).

A per-task dense export follows the layout sentence-transformers' ONNX backend loads
(``SentenceTransformer(folder, backend="onnx")``): ``<folder>/onnx/model.onnx`` and the dynamic int8 variant under
the name ``export_dynamic_quantized_onnx_model(model, "avx512", folder)`` gives it (``model_qint8_avx512.onnx``).
A multi-task export is one folder: ``model.onnx`` (inputs + ``task_id``), the tokenizer and ``mote_onnx.json``
(the task table).
"""

from __future__ import annotations

ONNX_DIR = "onnx"
MODEL_FILE = "model.onnx"
INT8_FILE = "model_qint8_avx512.onnx"  # sentence-transformers' name for dynamic int8 with the avx512 settings
LEGACY_INT8_FILE = "model_int8.onnx"  # format 1 exports
CONFIG_FILE = "mote_onnx.json"
FORMAT_VERSION = 2
MIN_COSINE = 0.9999
BATCH_SIZES = (1, 3, 17, 64)
OUTPUT_NAMES = ("sentence_embedding", "last_hidden_state")
INPUT_CANDIDATES = ("input_ids", "attention_mask", "token_type_ids")
TASK_INPUT = "task_id"
