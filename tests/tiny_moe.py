"""Tiny, randomly initialised MoE models and a word-level tokenizer, built offline, for the MoEE tests (moved from
mote.moee.testing).

Nothing here downloads anything: the configs are small enough to build in milliseconds on a CPU.

Example:
    >>> tok = tiny_tokenizer()
    >>> model = tiny_moe("qwen2_moe", num_hidden_layers=4, mlp_only_layers=[1])   # layer 1 is dense
    >>> [name for name, _, _ in find_router_modules(model)]
    ['model.layers.0.mlp.gate', 'model.layers.2.mlp.gate', 'model.layers.3.mlp.gate']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mote.moee.extract import find_router_modules

_WORDS = """the a an cat dog bird sat on mat rug this that sentence means in one word : " . ' , ? ! - ( ) is was he
she said hi hello big small red green blue runs ran quickly slowly over under tree house car road and or not describe
style following tone intent e.g. formal informal"""
WORDS: tuple[str, ...] = tuple(_WORDS.split())


def tiny_tokenizer():
    """A lower-casing word-level tokenizer over :data:`WORDS` (``[PAD]`` = 0, ``[UNK]`` = 1, ``</s>`` = 2)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "</s>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="</s>")


_COMMON: dict[str, Any] = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=24,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    pad_token_id=0,
    bos_token_id=None,
    eos_token_id=2,
    num_experts_per_tok=2,
)


def tiny_moe(arch: str = "olmoe", seed: int = 0, **overrides: Any) -> nn.Module:
    """A tiny random ``*ForCausalLM`` of a MoE family: ``olmoe``, ``qwen2_moe``, ``qwen3_moe`` or ``mixtral``.

    Router weights are drawn with a larger std than the default init so that routing varies between tokens.
    """
    import transformers as tf

    families = {
        "olmoe": (tf.OlmoeConfig, tf.OlmoeForCausalLM, {"num_experts": 8}),
        "qwen2_moe": (
            tf.Qwen2MoeConfig,
            tf.Qwen2MoeForCausalLM,
            {"num_experts": 6, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24},
        ),
        "qwen3_moe": (tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM, {"num_experts": 6, "moe_intermediate_size": 16}),
        "mixtral": (tf.MixtralConfig, tf.MixtralForCausalLM, {"num_local_experts": 4}),
    }
    if arch not in families:
        raise ValueError(f"Unknown tiny MoE family {arch!r}; choose from {sorted(families)}")
    config_cls, model_cls, extra = families[arch]
    # "eager" experts: torch's CPU grouped_mm costs ~0.1 s a call, far more than these tiny experts themselves.
    config = config_cls(**{**_COMMON, "experts_implementation": "eager", **extra, **overrides})
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():
        for _, module, _ in find_router_modules(model):
            module.weight.normal_(0.0, 0.5)
    return model


class RoutedIntermediate(nn.Module):
    """A BERT FFN-up with a learned top-1 token router over ``num_experts`` experts (a stand-in for a ``tlr`` layer).

    ``router`` is a ``nn.Linear(hidden, num_experts)``: the layout MoEE's default hook predicate finds.
    """

    def __init__(self, hidden: int, intermediate: int, num_experts: int, act: nn.Module) -> None:
        super().__init__()
        self.router = nn.Linear(hidden, num_experts)
        self.experts = nn.ModuleList(nn.Linear(hidden, intermediate) for _ in range(num_experts))
        self.act = act

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        logits = self.router(hidden_states)  # (B, T, E)
        choice = logits.argmax(-1, keepdim=True)  # top-1 per token
        outs = torch.stack([e(hidden_states) for e in self.experts], dim=-2)  # (B, T, E, I)
        picked = outs.gather(-2, choice.unsqueeze(-1).expand(*choice.shape, outs.shape[-1])).squeeze(-2)
        gate = torch.softmax(logits, -1).gather(-1, choice)
        return self.act(picked) * gate


def add_token_routers(model: nn.Module, layers: tuple[int, ...] = (0, 2), num_experts: int = 4, seed: int = 0):
    """Give BERT-family ``layers`` a learned top-1 token router (``layer.intermediate.router``), in place."""
    torch.manual_seed(seed)
    for i in layers:
        old = model.encoder.layer[i].intermediate
        routed = RoutedIntermediate(old.dense.in_features, old.dense.out_features, num_experts, nn.GELU())
        with torch.no_grad():
            routed.router.weight.normal_(0.0, 0.5)
        model.encoder.layer[i].intermediate = routed.to(old.dense.weight.device)
    return model.eval()


def tiny_routed_bert(num_experts: int = 4, routed_layers: tuple[int, ...] = (0, 2), seed: int = 0) -> nn.Module:
    """A tiny random ``BertModel`` whose ``routed_layers`` hold a token-level top-1 router (named ``router``)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=96,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=24,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    model = BertModel(config, add_pooling_layer=False)
    return add_token_routers(model, routed_layers, num_experts, seed)


__all__ = ["WORDS", "RoutedIntermediate", "add_token_routers", "tiny_moe", "tiny_routed_bert", "tiny_tokenizer"]
