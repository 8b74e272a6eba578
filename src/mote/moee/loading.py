"""Loading the model MoEE reads: a Hugging Face MoE backbone (dtype, optional bitsandbytes quantisation) or a
sentence-transformers folder (MoTE, token-routed MoTE and TSEmbed folders included).

Example:
    >>> model, tokenizer, local = load_model("allenai/OLMoE-1B-7B-0924", "cuda", "auto")   # doctest: +SKIP
    >>> resolve_dtype("auto", "cpu") in (torch.float32, torch.bfloat16)
    True
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS: tuple[str, ...] = ("4bit", "8bit")


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """``auto`` = bf16 on CUDA (fp16 without bf16 support) and on CPUs with native bf16, else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_native_bf16() else torch.float32


def quantization_config(quantization: str | None, compute_dtype: torch.dtype = torch.bfloat16):
    """A ``BitsAndBytesConfig`` for ``"4bit"`` (NF4, double quantisation, as the reference code) or ``"8bit"``."""
    if quantization is None:
        return None
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS} or None, got {quantization!r}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(
            f"{quantization} loading needs bitsandbytes and a CUDA GPU, and bitsandbytes is not installed "
            "(pip install bitsandbytes); load without quantization (bf16/float32) instead"
        )
    if not torch.cuda.is_available():
        raise ValueError(f"{quantization} loading (bitsandbytes) needs a CUDA GPU and none is available")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_model(
    name_or_path: str | os.PathLike,
    device: str,
    dtype: str | torch.dtype = "auto",
    quantization: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[nn.Module, Any, Path]:
    """``(model, tokenizer, local path)``: a sentence-transformers folder as its ``SentenceTransformer`` (tokenizer
    ``None``; it keeps its dtype unless one is given), anything else as a Hugging Face backbone (no LM head) and its
    tokenizer. See :meth:`mote.moee.MoEEEmbedder.from_pretrained` for the arguments."""
    from mote.base_models import resolve_model_path

    path = resolve_model_path(name_or_path)
    local = Path(path)
    if local.is_dir() and (local / "modules.json").is_file():
        from sentence_transformers import SentenceTransformer

        import mote  # lets sentence-transformers load MoTE, token-routed MoTE and TSEmbed folders
        st = mote.load(path, device=device) if (local / "mote_config.json").is_file() else None
        st = st or SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code)
        if dtype != "auto":
            st.to(resolve_dtype(dtype, device))
        model, tokenizer = st, None
    else:
        from transformers import AutoModel, AutoTokenizer

        torch_dtype = resolve_dtype(dtype, device)
        qconf = quantization_config(quantization, torch_dtype)
        kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
        if qconf is not None:
            kwargs.update(quantization_config=qconf, device_map={"": device})
        model = AutoModel.from_pretrained(path, **kwargs)
        if qconf is None:
            model.to(device)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model, tokenizer, local


__all__ = ["DTYPES", "QUANTIZATIONS", "load_model", "quantization_config", "resolve_dtype"]
