"""The image+text input path on a tiny random LLaVA (CLIP vision tower + Llama text model), built offline.

What this cannot show: behaviour with real VLM weights, and chat-template processors (Qwen2-VL and the like).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image  # Pillow: a dependency of matplotlib, itself a dependency of mote

from mote.lora import MoELoRAConfig, routing_distributions
from mote.lora.model import moe_lora_layers
from mote.lora.multimodal import convert_vlm, format_input
from mote.routing import RoutingTable

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory, minilm_tokenizer) -> str:
    """A random LLaVA (hidden 32) + processor folder: the MiniLM tokenizer with an <image> token, 32 px images."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaModel, LlavaProcessor

    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor as ImageProcessor

    tok = minilm_tokenizer.__class__.from_pretrained(minilm_tokenizer.name_or_path)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    processor = LlavaProcessor(
        image_processor=ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy="default", image_token="<image>",
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                pad_token_id=tok.pad_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llava")
    LlavaModel(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def image(seed: int):
    return Image.fromarray((np.random.default_rng(seed).random((40, 40, 3)) * 255).astype("uint8"))


def test_format_input_puts_prefix_and_image_placeholder():
    assert format_input("how do magnets work", "q: ") == "q: how do magnets work"
    assert format_input({"text": "a cat"}, "q: ", "<image>") == "q: a cat"
    assert format_input({"text": "a cat", "image": "x.png"}, "q: ", "<image>") == {
        "text": "<image> q: a cat", "image": "x.png"}
    assert format_input({"text": "<image> a cat", "image": "x.png"}, "q: ", "<image>")["text"] == "q: <image> a cat"
    with pytest.raises(TypeError, match="text only"):
        format_input(image(0), "q: ", None)
    with pytest.raises(TypeError, match="extra keys"):
        format_input({"text": "a", "audio": 1}, "q: ", "<image>")


def test_image_text_examples_flow_through_the_vlm_processor(tiny_llava, tmp_path):
    model = convert_vlm(tiny_llava, MoELoRAConfig(num_experts=4, r=4, lora_dropout=0.0))
    module = model[0]
    layers = moe_lora_layers(module.auto_model)
    assert layers and all(n.startswith("language_model.") for n in layers)  # not the vision tower
    items = [{"text": "a red square", "image": image(1)}, {"text": "a blue circle", "image": image(2)}]
    features = module.preprocess(items, task=["query", "document"])
    assert features["pixel_values"].shape[0] == 2 and features["task_ids"].tolist() == [0, 1]
    tokens = module.tokenizer.convert_ids_to_tokens(features["input_ids"][0])
    prefix = module.tokenizer.tokenize(RoutingTable.default().prefix("query"))
    start = tokens.index(prefix[0])
    assert tokens[1] == "<image>" and tokens[start : start + len(prefix)] == prefix  # placeholder, then the prefix
    emb = model.encode(items, task="query")
    assert emb.shape == (2, 32) and np.isfinite(emb).all()
    # Fresh adapters are a no-op: the same as the backbone with the adapters switched off.
    for layer in layers.values():
        layer.disable_adapters = True
    base = model.encode(items, task="query")
    for layer in layers.values():
        layer.disable_adapters = False
    np.testing.assert_allclose(emb, base, atol=1e-6)
    assert model.encode(["just text"], task="document").shape == (1, 32)
    assert model.encode([image(3)], task="query").shape == (1, 32)  # image only: the prefix still goes in
    sig = routing_distributions(model, items, task="query")
    assert sig.shape == (2, len(layers), 4)
    # Save / load keeps the VLM, its processor and the adapters.
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_B.normal_(0, 0.5)
    model.eval()
    trained = model.encode(items, task="query")
    model.save(str(tmp_path / "vlm"))
    from mote.lora import load

    np.testing.assert_allclose(load(tmp_path / "vlm").encode(items, task="query"), trained, atol=1e-5)
