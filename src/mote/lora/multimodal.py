"""The image+text input path of TSEmbed (the paper's target: vision-language backbones, MMEB).

Nothing here re-implements a processor. A vision-language backbone is loaded as sentence-transformers' stock
``Transformer`` (which calls the model's own ``processor`` for text, images and image+text dicts);
:class:`~mote.lora.st.TSEmbedTransformer` wraps it like a text encoder. What this module adds:

* :func:`format_input`: put the task prefix in front of an example's text and, for an image+text example, the
  processor's image placeholder (``<image>`` for LLaVA-style processors) when the text lacks it. An image-only
  example becomes ``{"image": ..., "text": "<image> <prefix>"}`` so that the task instruction still reaches the
  model.
* :func:`enable_image_text`: register the combined ``("image", "text")`` modality on a ``Transformer`` whose
  processor handles both but which inferred only the single modalities (processors without a chat template).
* :func:`convert_vlm`: a ready pipeline ``[TSEmbedTransformer, Pooling("lasttoken"), Normalize]``. MLLM embedders
  (VLM2Vec, and TSEmbed's MLLM setting) take the last token's hidden state; decoder backbones should pad left.
* ``all-linear`` targets only the language model of a VLM (its ``language_model`` submodule): vision-tower
  linears see image patches, not the batch's sequences.

Verified offline on a tiny random LLaVA (CLIP vision tower + Llama text model, built from configs in the tests):
image+text, text-only and mixed batches through the processor, the no-op start, routing signatures, save/load.
Not verified: real weights, and chat-template backbones (Qwen2-VL, the likely TSEmbed backbone) whose processors
expect the image placeholder inside a chat turn (there the ``message`` modality of sentence-transformers is the
path to use; see ``docs/tsembed.md``).

Example:
    >>> format_input({"text": "a red car", "image": img}, "search_query: ", "<image>")   # doctest: +SKIP
    {'text': '<image> search_query: a red car', 'image': <PIL.Image ...>}
"""

from __future__ import annotations

import os
from typing import Any

IMAGE_TEXT = ("image", "text")


def image_token_of(processor: Any) -> str | None:
    """The processor's image placeholder token (``processor.image_token``), or ``None`` for text-only models."""
    token = getattr(processor, "image_token", None)
    return token if isinstance(token, str) and token else None


def format_input(item: Any, prefix: str, image_token: str | None = None) -> Any:
    """One example with its task prefix applied (see the module doc).

    Args:
        item: a text, a ``{"text": ..., "image": ...}`` dict, or an image (PIL / array / tensor / path).
        prefix: the task's instruction prefix.
        image_token: the processor's image placeholder; ``None`` for text-only backbones.

    Example:
        >>> format_input("how do magnets work", "search_query: ")
        'search_query: how do magnets work'
        >>> format_input({"text": "a cat", "image": "cat.png"}, "q: ", "<image>")
        {'text': '<image> q: a cat', 'image': 'cat.png'}
    """
    if isinstance(item, str):
        return prefix + item
    if isinstance(item, dict):
        unknown = sorted(set(item) - {"text", "image"})
        if unknown:
            raise TypeError(f"Multimodal inputs are dicts with 'text' and/or 'image' keys; got extra keys {unknown}")
        text = item.get("text") or ""
        if not isinstance(text, str):
            raise TypeError(f"The 'text' of a multimodal input must be a string, got {type(text).__name__}")
        if "image" not in item:
            return prefix + text
        return {**item, "text": _with_placeholder(prefix + text, image_token)}
    if image_token is None:
        raise TypeError(
            f"This backbone encodes text only, got a {type(item).__name__}; pass strings (or use a vision-language "
            "backbone, see mote.lora.multimodal)"
        )
    return {"text": _with_placeholder(prefix.rstrip(), image_token), "image": item}


def _with_placeholder(text: str, image_token: str | None) -> str:
    if image_token is None:
        raise TypeError("This backbone's processor has no image token: it cannot take image inputs")
    return text if image_token in text else f"{image_token} {text}".rstrip()


def enable_image_text(transformer) -> None:
    """Let a stock ``Transformer`` take ``{"text", "image"}`` inputs when its processor takes both (in place)."""
    config = transformer.modality_config
    if IMAGE_TEXT in config or "message" in config:
        return
    if "text" not in config or "image" not in config:
        raise ValueError(
            f"{type(transformer.model).__name__} handles {list(config)}: image+text inputs need a processor with a "
            "tokenizer and an image processor"
        )
    config[IMAGE_TEXT] = dict(config["text"])


def convert_vlm(
    path: str | os.PathLike,
    lora=None,
    routing=None,
    device: str = "cpu",
    normalize: bool = True,
):
    """A TSEmbed pipeline over the vision-language model saved at ``path`` (model + processor folder).

    Example:
        >>> model = convert_vlm("tiny-llava", MoELoRAConfig(num_experts=4))                 # doctest: +SKIP
        >>> model.encode([{"text": "a red square", "image": img}], task="query").shape      # doctest: +SKIP
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from mote.lora.config import MoELoRAConfig
    from mote.lora.st import TSEmbedTransformer
    from mote.routing import RoutingTable

    routing = routing or RoutingTable.default()
    transformer = Transformer(str(path))
    enable_image_text(transformer)
    module = TSEmbedTransformer(transformer, routing, lora or MoELoRAConfig())
    modules = [module, Pooling(module.get_embedding_dimension(), "lasttoken")]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, prompts=routing.saved_prompts(), device=device)
