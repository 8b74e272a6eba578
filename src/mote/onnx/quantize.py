"""Dynamic int8 quantisation of a verified fp32 export, written only together with its measured quality.

sentence-transformers' ``export_dynamic_quantized_onnx_model(model, "avx512", folder)`` runs optimum's quantizer,
which runs onnxruntime's dynamic quantisation with the avx512 settings (int8 symmetric per-channel weights, uint8
activations) and names the file ``model_qint8_avx512.onnx``. optimum-onnx cannot be installed next to transformers 5
(it pins transformers < 4.58), so this module calls onnxruntime's ``quantize_dynamic`` with those same settings and
that file name directly; what it adds is the measurement (cosine vs torch, STSBenchmark Spearman change).

Example:
    >>> quality = quantize(folder, target, texts, reference, sts_pairs(None))   # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mote.onnx.encoder import OnnxEncoder, logger
from mote.onnx.files import INT8_FILE, MODEL_FILE
from mote.onnx.graph import quiet_export
from mote.onnx.reports import Int8Quality
from mote.onnx.verify import cosines, spearman


def quantize(tmp: Path, target: Path, texts: list[str], reference: np.ndarray, sts) -> Int8Quality:
    """Write ``model_qint8_avx512.onnx`` (dynamic int8, avx512 settings) and measure it against the fp32 model.

    Cosines: int8 vs torch on the verification texts, and int8 vs fp32 ONNX (verified equal to torch) on the
    STSBenchmark sentences. Spearman: fp32 ONNX (= torch) vs int8, cosine similarity against the gold scores.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_export(root=True):
        # Per-channel weight scales: mean cosine 0.993 vs 0.968 per-tensor on MiniLM, at the same size and speed.
        quantize_dynamic(str(tmp / MODEL_FILE), str(tmp / INT8_FILE), weight_type=QuantType.QInt8, per_channel=True)
    fp32, int8 = OnnxEncoder(tmp), _int8_encoder(tmp)
    a, b, gold = zip(*sts)
    unique = sorted(set(a) | set(b))
    pos = {s: i for i, s in enumerate(unique)}
    ia, ib = [pos[s] for s in a], [pos[s] for s in b]
    ref, q = fp32.encode(unique, batch_size=64), int8.encode(unique, batch_size=64)
    cos = np.concatenate([cosines(int8.encode(texts, batch_size=32), reference), cosines(q, ref)])
    gold_arr = np.asarray(gold)
    return Int8Quality(
        path=target / INT8_FILE,
        size_mb=(tmp / INT8_FILE).stat().st_size / 2**20,
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        sts_pairs=len(sts),
        spearman_fp32=spearman(ref[ia], ref[ib], gold_arr),
        spearman_int8=spearman(q[ia], q[ib], gold_arr),
    )


def _int8_encoder(onnx_dir: Path) -> OnnxEncoder:
    """The int8 encoder without the load-time quality warning (its quality is being measured right now)."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return OnnxEncoder(onnx_dir, quantized=True)
    finally:
        logger.setLevel(level)
