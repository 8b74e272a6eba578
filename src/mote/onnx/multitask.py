"""One ONNX graph for every task of a MoTE model: inputs + ``task_id``, every expert inside, verified against torch.

:func:`export_multitask` writes ``OUT/model.onnx`` with inputs ``input_ids``, ``attention_mask`` (``token_type_ids``
where the model has them) and ``task_id`` (int64 ``[batch]``, the row's index in the routing table), outputs
``sentence_embedding`` (pooled, normalised) and ``last_hidden_state``, plus the tokenizer and ``mote_onnx.json``
(the task table). Shared weights (embeddings, attention, dense layers) are stored once and each expert layer's
stacked weights once, so one session serves every task at one model's memory.

How the graph routes: ``task_id`` -> expert through a constant table; in each expert layer the rows of each expert
are gathered (``NonZero`` + ``Gather``), run through that expert's FFN as one matmul, and scattered back. A batch of
one task therefore costs one matmul per projection, like the dense model (the other experts see zero rows); the
norms apply each row's expert weights in one gathered affine. The export is refused (and nothing kept) unless
onnxruntime reproduces the torch MoTE model with min cosine >= 0.9999 on real sentences of every length (truncated
ones too): all tasks mixed in ragged batches of 1, 3, 17 and 64 rows, every task alone in batches of 3 and 64, and
random token and task ids from 1 token to ``max_seq_length``. Token-routed models (TLR, TSEmbed) are refused.

Example:
    >>> print(export_multitask("minilm-mote", "minilm-mote-onnx"))                 # doctest: +SKIP
    >>> MultiTaskOnnxEncoder("minilm-mote-onnx").encode(["hi"], task="query")     # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mote.atomic import atomic_dir, atomic_write_bytes, atomic_write_json
from mote.onnx.deps import require_onnx
from mote.onnx.files import (
    BATCH_SIZES,
    CONFIG_FILE,
    FORMAT_VERSION,
    INPUT_CANDIDATES,
    MIN_COSINE,
    MODEL_FILE,
    OUTPUT_NAMES,
    TASK_INPUT,
)
from mote.onnx.graph import export_bytes
from mote.onnx.reports import MultiTaskReport
from mote.onnx.texts import token_lengths, verification_texts
from mote.onnx.verify import OnnxVerificationError, cosines

# Each task alone in ragged batches of 3 and 64 rows; the mixed batches (which also route every task) at every size.
SINGLE_TASK_BATCH_SIZES = (3, 64)


def graph_module(model):
    """A torch module ``(input_ids, attention_mask[, token_type_ids], task_id) -> (sentence_embedding, tokens)``.

    A copy of the MoTE encoder whose expert modules route by a per-row expert tensor inside the graph (no host-side
    planning), followed by the model's Pooling/Dense/Normalize modules.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    from mote.experts import ExpertLayerNorm, ExpertLinear, _get, _set, layer_slots, transformer_layers
    from mote.export import sequence_routed_module

    module = sequence_routed_module(model)
    hf = copy.deepcopy(module.auto_model).cpu().eval()

    class Rows:
        """The per-row expert ids of the forward being traced, shared by every expert layer."""

        experts: Any = None

    rows = Rows()

    class GraphExpertLinear(nn.Module):
        def __init__(self, m: ExpertLinear) -> None:
            super().__init__()
            # One initializer per expert (slices of the stack, each stored once): no Gather on the weights at run
            # time, and nothing for onnxruntime to constant-fold into a second copy when the session loads.
            def split(stack):
                return nn.ParameterList([nn.Parameter(t.detach().clone()) for t in stack])

            self.weights = split(m.weight)
            self.biases = None if m.bias is None else split(m.bias)
            self.num_experts, self.out_features = m.num_experts, m.out_features

        def forward(self, x):  # x: (B, T, in); each expert's rows gathered, one matmul, scattered back
            out = x.new_zeros(*x.shape[:-1], self.out_features)
            for e in range(self.num_experts):  # unrolled in the graph: E static branches, zero rows cost nothing
                idx = torch.nonzero(rows.experts == e).squeeze(1)
                bias = None if self.biases is None else self.biases[e]
                out = out.index_copy(0, idx, F.linear(x.index_select(0, idx), self.weights[e], bias))
            return out

    class GraphExpertLayerNorm(nn.Module):
        def __init__(self, m: ExpertLayerNorm) -> None:
            super().__init__()
            self.weight, self.bias, self.hidden, self.eps = m.weight, m.bias, m.hidden, m.eps

        def forward(self, x):  # normalise once, then each row's expert affine (gathered [B, 1, H])
            normed = F.layer_norm(x, (self.hidden,), None, None, self.eps)
            weight = self.weight.index_select(0, rows.experts).unsqueeze(1)
            bias = self.bias.index_select(0, rows.experts).unsqueeze(1)
            return normed * weight + bias

    for layer in transformer_layers(hf):
        for path in layer_slots(hf):
            m = _get(layer, path)
            if isinstance(m, ExpertLinear):
                _set(layer, path, GraphExpertLinear(m))
            elif isinstance(m, ExpertLayerNorm):
                _set(layer, path, GraphExpertLayerNorm(m))
    experts_of_task = [module.routing.expert(t) for t in module.routing.task_names]

    class MultiTaskEmbedder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = hf
            self.heads = nn.ModuleList(copy.deepcopy(list(model)[1:]))
            self.register_buffer("expert_of_task", torch.tensor(experts_of_task, dtype=torch.long))

        def embed(self, input_ids, attention_mask, token_type_ids, task_id):
            rows.experts = self.expert_of_task.index_select(0, task_id)
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            tokens = self.model(**kwargs, return_dict=True).last_hidden_state
            features = {"token_embeddings": tokens, "attention_mask": attention_mask}
            for head in self.heads:
                features = head(features)
            return features["sentence_embedding"], tokens

    class WithTokenTypes(MultiTaskEmbedder):
        def forward(self, input_ids, attention_mask, token_type_ids, task_id):
            return self.embed(input_ids, attention_mask, token_type_ids, task_id)

    class WithoutTokenTypes(MultiTaskEmbedder):
        def forward(self, input_ids, attention_mask, task_id):
            return self.embed(input_ids, attention_mask, None, task_id)

    uses_token_types = "token_type_ids" in module.tokenizer.model_input_names
    return (WithTokenTypes() if uses_token_types else WithoutTokenTypes()).eval()


def _check_heads(model) -> None:
    from sentence_transformers.base.modules import Dense, Normalize
    from sentence_transformers.sentence_transformer.modules import Pooling

    heads = list(model)[1:]
    bad = [type(m).__name__ for m in heads if not isinstance(m, Pooling | Dense | Normalize)]
    if bad or not any(isinstance(m, Pooling) for m in heads):
        raise ValueError(f"Expected Pooling (+ Dense/Normalize) after the MoTE module, got {bad}")
    if any(isinstance(m, Pooling) and not m.include_prompt for m in heads):
        raise ValueError("Pooling with include_prompt=False is not supported by the ONNX export")


def _reference(model, texts: list[str], tasks: list[str]) -> dict[str, np.ndarray]:
    """The torch MoTE model's embeddings of every text for every task."""
    from mote.api import encode

    return {t: encode(model, texts, task=t, batch_size=32) for t in tasks}


def _verify_texts(encoder, texts: list[str], reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cosines ONNX vs torch: each task alone and all tasks mixed, in shuffled ragged batches of several sizes."""
    tasks = list(reference)
    n = len(texts)
    rng = np.random.default_rng(1)
    lengths = np.asarray([len(ids) for ids in (e.ids for e in encoder.tokenizer.encode_batch(texts))])
    short = np.flatnonzero(lengths <= encoder.max_seq_length // 2)
    long = np.flatnonzero(lengths > encoder.max_seq_length // 2)
    mixed_tasks = np.asarray([tasks[i % len(tasks)] for i in rng.permutation(n)])
    mixed_ref = np.stack([reference[t][i] for i, t in enumerate(mixed_tasks)])
    out: dict[str, list[np.ndarray]] = {t: [] for t in [*tasks, "mixed"]}
    for name in out:
        row_tasks = mixed_tasks if name == "mixed" else np.asarray([name] * n)
        ids = encoder.task_ids(list(row_tasks), n)
        prompted = encoder.prompted(texts, ids)
        ref = mixed_ref if name == "mixed" else reference[name]
        sizes = BATCH_SIZES if name == "mixed" else SINGLE_TASK_BATCH_SIZES
        for size in sizes:  # only one batch per size mixes short and long texts (padding to the max costs)
            order = np.concatenate([rng.permutation(short), rng.permutation(long)])
            emb = np.empty_like(ref)
            for start in range(0, n, size):
                idx = order[start : start + size]
                emb[idx] = encoder.embed_batch([prompted[i] for i in idx], ids[idx])
            out[name].append(cosines(emb, ref))
        if name == "mixed":  # the encode() path too (length-sorted batches)
            out[name].append(cosines(encoder.encode(texts, task=list(row_tasks), batch_size=32), ref))
    return {k: np.concatenate(v) for k, v in out.items()}


def _verify_ids(model, session, input_names: list[str], vocab_size: int, max_len: int, n_tasks: int) -> np.ndarray:
    """Cosines ONNX vs torch on random token ids and random task ids, 1 token to ``max_len``, ragged padding."""
    import torch

    rng = np.random.default_rng(2)
    cos = []
    for batch, seq in ((1, 1), (3, 2), (17, 37), (64, 29), (2, max_len), (1, max_len - 1)):
        seq = max(1, min(seq, max_len))
        ids = rng.integers(999, max(1000, vocab_size), size=(batch, seq), dtype=np.int64)
        lengths = rng.integers(1, seq + 1, size=batch)
        lengths[0] = seq
        mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
        feeds = {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {k: v for k, v in feeds.items() if k in input_names}
        feeds[TASK_INPUT] = rng.integers(0, n_tasks, size=batch, dtype=np.int64)
        features = {k: torch.from_numpy(v) for k, v in feeds.items() if k != TASK_INPUT}
        features["task_ids"] = torch.from_numpy(feeds[TASK_INPUT])
        with torch.no_grad():
            ref = model(features)["sentence_embedding"].float().numpy()
        (out,) = session.run(["sentence_embedding"], feeds)
        cos.append(cosines(out, ref))
    return np.concatenate(cos)


def export_multitask(
    model: Any,
    output: str | os.PathLike,
    *,
    opset: int | None = None,
    data: str | os.PathLike | None = None,
    min_cosine: float = MIN_COSINE,
    overwrite: bool = False,
) -> MultiTaskReport:
    """Export every task of a MoTE model (a ``SentenceTransformer`` or its folder) as one verified ONNX graph.

    Writes ``output/`` atomically (``model.onnx``, tokenizer, ``mote_onnx.json``); raises
    :class:`OnnxVerificationError` and keeps nothing if onnxruntime does not reproduce the torch model.

    Example:
        >>> print(export_multitask("minilm-mote", "minilm-mote-onnx"))   # doctest: +SKIP
    """
    require_onnx()
    t0 = time.perf_counter()
    import torch

    from mote.api import load
    from mote.export import sequence_routed_module
    from mote.onnx.runtime import MultiTaskOnnxEncoder

    source = None
    if isinstance(model, str | os.PathLike):
        source = str(Path(model).resolve())
        model = load(model, device="cpu")
    module = sequence_routed_module(model)
    _check_heads(model)
    tokenizer = module.tokenizer
    if not getattr(tokenizer, "is_fast", False) or tokenizer.pad_token is None:
        raise ValueError("The multi-task export needs a fast tokenizer (tokenizer.json) with a pad token")
    model = model.to("cpu").eval()
    routing = module.routing
    max_len = int(module.max_seq_length)
    config = module.auto_model.config
    longest_prefix = max((r.prefix for r in routing.routes), key=len)
    texts, source = verification_texts(tokenizer, max_len, data, prompt=longest_prefix)
    timings = {"load": time.perf_counter() - t0}

    graph = graph_module(model)
    pair = [routing.prefix(routing.task_names[0]) + texts[0], f"{texts[0]} {texts[1]}"]
    example = dict(tokenizer(pair, padding=True, truncation="longest_first", return_tensors="pt"))
    input_names = [n for n in INPUT_CANDIDATES if n in example and n in tokenizer.model_input_names]
    example = {n: example[n] for n in input_names}
    example[TASK_INPUT] = torch.tensor([0, len(routing.task_names) - 1], dtype=torch.long)
    try:
        proto = export_bytes(
            graph, example, getattr(config, "max_position_embeddings", None), opset, per_row=(TASK_INPUT,)
        )
    except Exception as e:
        raise RuntimeError(f"Multi-task ONNX export of {type(module.auto_model).__name__} failed: {e}") from e
    timings["export"] = time.perf_counter() - t0 - sum(timings.values())

    reference = _reference(model, texts, routing.task_names)
    timings["torch_reference"] = time.perf_counter() - t0 - sum(timings.values())
    prompted = [(p.lower() if module.do_lower_case else p) for p in (longest_prefix + t for t in texts)]
    lengths = token_lengths(tokenizer, prompted)
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "kind": "multitask",
        "exported_from": source,
        "inputs": [*input_names, TASK_INPUT],
        "outputs": list(OUTPUT_NAMES),
        "dimension": int(model.get_embedding_dimension()),
        "max_seq_length": max_len,
        "do_lower_case": bool(module.do_lower_case),
        "tokenizer": {
            "pad_token": tokenizer.pad_token,
            "pad_token_id": tokenizer.pad_token_id,
            "pad_token_type_id": getattr(tokenizer, "pad_token_type_id", 0),
            "padding_side": tokenizer.padding_side,
            "truncation_side": tokenizer.truncation_side,
        },
        "tasks": [
            {"task_id": i, "name": r.name, "prefix": r.prefix, "expert": r.expert}
            for i, r in enumerate(routing.routes)
        ],
        "default_task": routing.default_task,
        "num_experts": routing.num_experts,
        "expert_layers": list(module.expert_layers),
        "matryoshka_dims": getattr(module, "matryoshka_dims", None),
        "torch_version": torch.__version__,
    }
    output = Path(output)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        atomic_write_bytes(tmp / MODEL_FILE, proto)
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / CONFIG_FILE, meta)
        encoder = MultiTaskOnnxEncoder(tmp)
        by_task = _verify_texts(encoder, texts, reference)
        id_cos = _verify_ids(
            model, encoder.session, input_names, int(config.vocab_size), max_len, len(routing.task_names)
        )
        timings["verify"] = time.perf_counter() - t0 - sum(timings.values())
        all_cos = np.concatenate([*by_task.values(), id_cos])
        report = MultiTaskReport(
            path=output / MODEL_FILE,
            size_mb=len(proto) / 2**20,
            seconds=time.perf_counter() - t0,
            tasks=list(routing.task_names),
            texts=len(texts),
            texts_source=source,
            token_lengths=(min(lengths), min(max(lengths), max_len)),
            truncated=sum(n > max_len for n in lengths),
            batch_sizes=BATCH_SIZES,
            min_cosine=float(all_cos.min()),
            mean_cosine=float(all_cos.mean()),
            threshold=min_cosine,
            checks={**{f"{k}_min_cosine": float(v.min()) for k, v in by_task.items()},
                    "token_ids_min_cosine": float(id_cos.min())},
            timings=timings,
        )
        del encoder
        if not report.min_cosine >= min_cosine:
            raise OnnxVerificationError(
                f"The multi-task ONNX graph does not reproduce the torch MoTE model: min cosine "
                f"{report.min_cosine:.6f} < {min_cosine} ({report.checks}); nothing was kept"
            )
        meta["verification"] = report.to_dict()
        atomic_write_json(tmp / CONFIG_FILE, meta)
    return report
