"""mote.moee: training-free embeddings from the routers of mixture-of-experts models (MoEE, ICLR 2025).

"Your Mixture-of-Experts LLM Is Secretly an Embedding Model For Free" (Li & Zhou): the routing weights (RW) of a
MoE model's routers, concatenated over MoE layers, are an embedding that complements the last hidden state (HS).
This package reads both from one forward pass of any Hugging Face MoE model whose router logits are reachable
(``output_router_logits=True`` or hooks on its gate modules) and of this project's token-routed MoTE models.

Example:
    >>> from mote.moee import MoEEConfig, MoEEEmbedder, encoder_for_eval
    >>> emb = MoEEEmbedder.from_pretrained("allenai/OLMoE-1B-7B-0924", MoEEConfig())  # doctest: +SKIP
    >>> emb.encode(["how do magnets work"], view="rw").shape                        # doctest: +SKIP
    (1, 1024)
    >>> enc = encoder_for_eval("allenai/OLMoE-1B-7B-0924", "sum", alpha="auto")       # doctest: +SKIP
"""

from mote.moee.combine import (
    Standardizer,
    combine_predictions,
    select_alpha,
    sum_pair_scores,
    sum_score_matrix,
)
from mote.moee.config import VIEWS, MoEEConfig
from mote.moee.encoder import MoEEEncoder, MoEESumEncoder, encoder_for_eval
from mote.moee.extract import NoRouterError, RouterLayout, find_router_modules
from mote.moee.model import MoEEEmbedder, MoEEFeatures, stats_dirname
from mote.moee.templates import PAPER_PROMPTS, TEMPLATES, render

__all__ = [
    "PAPER_PROMPTS",
    "TEMPLATES",
    "VIEWS",
    "MoEEConfig",
    "MoEEEmbedder",
    "MoEEEncoder",
    "MoEEFeatures",
    "MoEESumEncoder",
    "NoRouterError",
    "RouterLayout",
    "Standardizer",
    "combine_predictions",
    "encoder_for_eval",
    "find_router_modules",
    "render",
    "select_alpha",
    "stats_dirname",
    "sum_pair_scores",
    "sum_score_matrix",
]
