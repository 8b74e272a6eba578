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

from mote.lora.inputs import IMAGE_TEXT, enable_image_text, format_input, image_token_of
from mote.lora.st import TSEmbedTransformer


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
    from mote.routing import RoutingTable

    routing = routing or RoutingTable.default()
    transformer = Transformer(str(path))
    enable_image_text(transformer)
    module = TSEmbedTransformer(transformer, routing, lora or MoELoRAConfig())
    modules = [module, Pooling(module.get_embedding_dimension(), "lasttoken")]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, prompts=routing.saved_prompts(), device=device)


__all__ = ["IMAGE_TEXT", "convert_vlm", "enable_image_text", "format_input", "image_token_of"]
