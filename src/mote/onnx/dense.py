"""Per-task dense export: ``<dense folder>/onnx/`` laid out as sentence-transformers' ONNX backend loads it.

:func:`export_onnx` turns a dense sentence-transformers folder (from :func:`mote.export.export_dense`) into
``<folder>/onnx/``: ``model.onnx`` (BERT + the folder's Pooling/Normalize in one graph; inputs ``input_ids``,
``attention_mask``, ``token_type_ids`` with dynamic batch and sequence axes; outputs ``sentence_embedding`` and
``last_hidden_state``, the output sentence-transformers' ONNX backend reads), with ``quantize=True`` the dynamic
int8 ``model_qint8_avx512.onnx`` (the file sentence-transformers' own int8 helper writes), the tokenizer exactly as
sentence-transformers configured it, and ``mote_onnx.json`` (prompts, tokenizer settings, measured quality). So
``SentenceTransformer(folder, backend="onnx")`` loads it with no mote installed, and
``model_kwargs={"file_name": "model_qint8_avx512.onnx"}`` picks the int8 model.

Why our own exporter and not ``SentenceTransformer(folder, backend="onnx", model_kwargs={"export": True})``: that
export runs optimum-onnx, which pins transformers < 4.58 and cannot be installed with transformers 5
(huggingface/optimum-onnx#114). The export is verified against torch anyway (:mod:`mote.onnx.verify`), and the int8
model is written only together with its measured quality (:mod:`mote.onnx.quantize`).

Example:
    >>> report = export_onnx("minilm-query", quantize=True)   # doctest: +SKIP
    >>> print(report)                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mote.atomic import atomic_dir, atomic_write_bytes, atomic_write_json
from mote.onnx.deps import require_onnx
from mote.onnx.encoder import OnnxEncoder
from mote.onnx.files import (
    BATCH_SIZES,
    CONFIG_FILE,
    FORMAT_VERSION,
    INPUT_CANDIDATES,
    INT8_FILE,
    MIN_COSINE,
    MODEL_FILE,
    ONNX_DIR,
    OUTPUT_NAMES,
)
from mote.onnx.graph import embedder, export_bytes, load_dense, opset_of
from mote.onnx.quantize import quantize as quantize_int8
from mote.onnx.reports import ExportReport
from mote.onnx.texts import sts_pairs, token_lengths, verification_texts
from mote.onnx.verify import OnnxVerificationError, verify_ids, verify_texts


def export_onnx(
    dense_dir: str | os.PathLike,
    quantize: bool = False,
    opset: int | None = None,
    *,
    data: str | os.PathLike | None = None,
    min_cosine: float = MIN_COSINE,
    max_sts_pairs: int | None = None,
    staged_for: str | os.PathLike | None = None,
) -> ExportReport:
    """Export a dense sentence-transformers folder to ``<dense_dir>/onnx/`` and verify it against torch.

    Writes ``model.onnx`` (and with ``quantize=True`` ``model_int8.onnx``), the tokenizer and ``mote_onnx.json``
    into a temp folder that replaces ``onnx/`` in one rename. Raises :class:`OnnxVerificationError` (and leaves no
    ``onnx/`` folder) if the fp32 model's min cosine vs torch is below ``min_cosine``. The int8 model is never
    refused but always reported with its quality: cosine vs torch and STSBenchmark Spearman change (needs the
    dataset folder: ``data``, ``$MOTE_DATA`` or ``../shared/data``; ``max_sts_pairs`` limits the pairs).

    ``staged_for``: ``dense_dir`` is a staging folder that its caller publishes as ``staged_for`` together with
    ``onnx/`` (``mote export --onnx``: one atomic publish of the whole output); ``onnx/`` is then written into it
    directly, and the report and ``mote_onnx.json`` name ``staged_for``.

    Example:
        >>> print(export_onnx("minilm-query", quantize=True))   # doctest: +SKIP
    """
    require_onnx()
    t0 = time.perf_counter()
    dense_dir = Path(dense_dir)
    st = load_dense(dense_dir)
    sts = sts_pairs(data, max_sts_pairs) if quantize else None  # fail early: int8 is never offered unmeasured
    import torch

    transformer = st[0]
    tokenizer = transformer.tokenizer
    max_len = int(st.max_seq_length)
    config = transformer.auto_model.config
    max_positions = getattr(config, "max_position_embeddings", None)
    prompt = (st.prompts.get(st.default_prompt_name) if st.default_prompt_name else None) or ""
    texts, source = verification_texts(tokenizer, max_len, data, prompt=prompt)
    timings = {"load": time.perf_counter() - t0}

    module = embedder(st)
    # Two rows of different lengths, so the example has padding (the dynamic axes do not depend on it).
    pair = [texts[0], f"{texts[0]} {texts[1]}"]
    example = tokenizer(pair, padding=True, truncation="longest_first", return_tensors="pt")
    input_names = [n for n in INPUT_CANDIDATES if n in example]
    try:
        proto = export_bytes(module, {n: example[n] for n in input_names}, max_positions, opset)
    except Exception as e:
        raise RuntimeError(f"ONNX export of {type(transformer.auto_model).__name__} failed: {e}") from e
    timings["export"] = time.perf_counter() - t0 - sum(timings.values())

    target = dense_dir / ONNX_DIR
    reference = st.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    lengths = token_lengths(tokenizer, [prompt + t for t in texts])
    timings["torch_reference"] = time.perf_counter() - t0 - sum(timings.values())
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "exported_from": str(Path(staged_for or dense_dir).resolve()),
        "kind": "dense",
        "inputs": input_names,
        "outputs": list(OUTPUT_NAMES),
        "dimension": int(st.get_embedding_dimension()),
        "max_seq_length": max_len,
        "tokenizer": {
            "pad_token": tokenizer.pad_token,
            "pad_token_id": tokenizer.pad_token_id,
            "pad_token_type_id": getattr(tokenizer, "pad_token_type_id", 0),
            "padding_side": tokenizer.padding_side,
            "truncation_side": tokenizer.truncation_side,
        },
        "prompts": dict(st.prompts),
        "default_prompt_name": st.default_prompt_name,
        "int8_file": INT8_FILE,
        "torch_version": torch.__version__,
    }
    published = Path(staged_for) / ONNX_DIR if staged_for is not None else target
    try:
        with (atomic_dir(target, overwrite=True) if staged_for is None else _fresh_dir(target)) as tmp:
            atomic_write_bytes(tmp / MODEL_FILE, proto)
            tokenizer.save_pretrained(str(tmp))
            atomic_write_json(tmp / CONFIG_FILE, meta)
            encoder = OnnxEncoder(tmp)
            text_cos = verify_texts(encoder, texts, reference, BATCH_SIZES)
            id_cos = verify_ids(module, encoder.session, int(config.vocab_size), max_len, input_names)
            all_cos = np.concatenate([text_cos, id_cos])
            timings["verify"] = time.perf_counter() - t0 - sum(timings.values())
            report = ExportReport(
                path=published / MODEL_FILE,
                opset=opset_of(proto),
                size_mb=len(proto) / 2**20,
                seconds=0.0,
                texts=len(texts),
                texts_source=source,
                token_lengths=(min(lengths), min(max(lengths), max_len)),
                truncated=sum(n > max_len for n in lengths),
                batch_sizes=BATCH_SIZES,
                min_cosine=float(all_cos.min()),
                mean_cosine=float(all_cos.mean()),
                threshold=min_cosine,
                checks={"texts_min_cosine": float(text_cos.min()), "token_ids_min_cosine": float(id_cos.min())},
                timings=timings,
            )
            del encoder
            if not report.min_cosine >= min_cosine:
                raise OnnxVerificationError(
                    f"ONNX export of {dense_dir} does not reproduce the torch model: min cosine "
                    f"{report.min_cosine:.6f} < {min_cosine} (texts {report.checks['texts_min_cosine']:.6f}, "
                    f"token ids {report.checks['token_ids_min_cosine']:.6f}); nothing was kept"
                )
            if quantize:
                report.int8 = quantize_int8(tmp, published, texts, reference, sts)
                timings["int8"] = time.perf_counter() - t0 - sum(timings.values())
            report.seconds = time.perf_counter() - t0
            meta["verification"] = report.to_dict()
            meta["int8"] = meta["verification"].pop("int8", None)
            atomic_write_json(tmp / CONFIG_FILE, meta)
    except OnnxVerificationError:
        shutil.rmtree(target, ignore_errors=True)  # an older export of this folder is no longer trustworthy
        raise
    return report


@contextlib.contextmanager
def _fresh_dir(target: Path) -> Iterator[Path]:
    """``target`` inside a staging folder nobody else sees (published later by its owner): created empty, removed
    if the block fails."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        yield target
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
