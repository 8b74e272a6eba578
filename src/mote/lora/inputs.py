"""Task prefixes on text, image and image+text inputs of TSEmbed models: the input side of
:mod:`mote.lora.multimodal`, shared by :class:`~mote.lora.st.TSEmbedTransformer` and
:func:`~mote.lora.multimodal.convert_vlm`.

Example:
    >>> format_input("how do magnets work", "search_query: ")
    'search_query: how do magnets work'
"""

from __future__ import annotations

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
