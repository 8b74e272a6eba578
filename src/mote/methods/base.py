"""The method interface: what the trainer, the experiment runner and the CLI may ask of a training method.

A *method* (``mote``, ``ic``, ``static``, ...) is registered the way PEFT maps a tuner type to its config and
model classes (:func:`mote.methods.register_method`: a name, a :class:`MethodConfig` subclass holding the
method's own settings, and a :class:`Method` subclass). A recipe's ``method:`` section is validated into that
config class (``cfg.method``, strict: a setting the method does not have is an error). The method builds its model
from a :class:`~mote.train.config.RunConfig` (:meth:`Method.build`, returning a :class:`MethodModel`: the model,
which parameters train and how the trainer feeds it), adds its own recipe checks (:meth:`Method.problems`), and
declares with a few flags how it trains (task-mixed batches, a router load-balancing loss, weight snapshots for
``mote select``, a training loop of its own) and how its trained model is evaluated (:attr:`Method.eval_mode`).
Nothing outside ``mote.methods`` branches on a method's name.

What a trained model can *export* is a property of the saved model folder, not of the recipe (folders outlive
their configs): ``mote export`` asks the folder's module class (a MoTE folder exports per task; token-routed TLR
and TSEmbed folders refuse).

Example (a new method: one module like this plus one registry line in :mod:`mote.methods`)::

    class FrozenICConfig(MethodConfig):
        pass                                  # no settings of its own

    class FrozenIC(Method):
        summary = "the dense base with task prefixes, nothing trained but the norms"
        routed = False

        def build(self, cfg, device="cpu"):
            model = dense_base(cfg, device)
            return finish_model(cfg, self.name, model, layers=[], routed=False, freeze=True)

    register_method("frozen-ic", FrozenICConfig, FrozenIC)    # its name is set by the registry
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from torch import nn

    from mote.routing import RoutingTable
    from mote.train.config import RunConfig


class MethodConfig(BaseModel):
    """The settings of one method (a recipe's ``method:`` section), validated strictly: what every method shares.

    Each method subclasses it with its own settings (:class:`PlacementConfig` for the layers MoTE's experts sit at,
    ``mote.methods.tlr.TLRConfig``, ``mote.methods.tsembed_config.TSEmbedMethodConfig``, ...). ``name`` is the
    registered method; the recipe's short form ``method: mote`` is ``{name: mote}`` with every setting at its
    default.
    """

    model_config = ConfigDict(extra="forbid")

    name: str

    @classmethod
    def for_steps(cls, settings: dict[str, Any], steps: int) -> dict[str, Any]:
        """The raw settings completed for the run's step budget ``train.steps`` (before validation; e.g. TSEmbed's
        stage steps left out). Malformed input is left to the validation."""
        return settings

    @classmethod
    def rescaled(cls, settings: dict[str, Any], steps: int) -> dict[str, Any]:
        """Dumped settings for a new step budget (``mote train --steps``)."""
        return settings


class PlacementConfig(MethodConfig):
    """A method whose experts (or expert-like trainable set) sit at some of the base's layers."""

    placement: str = "every-other"  # EB: every, EOB: every-other, or layer indices "1,3"

    @field_validator("placement")
    @classmethod
    def _placement(cls, value: str) -> str:
        from mote.experts import resolve_placement

        resolve_placement(value, 1_000)  # the spelling; the layer count is checked when the model is built
        return value


class ExpertsConfig(PlacementConfig):
    """A MoTE-family method: experts at ``placement``, and what trains."""

    # "experts": the expert FFN + norms (everything shared stays the base's); "all": every weight;
    # None: the method's own default (experts)
    trainable: Literal["all", "experts"] | None = None

    def trains_experts_only(self) -> bool:
        """Whether only the experts train (``trainable: experts``, or left to the default)."""
        return self.trainable != "all"


@dataclass
class MethodModel:
    """A model ready for training, and how the trainer must feed and optimise it."""

    method: str
    model: SentenceTransformer
    routing: RoutingTable
    routed: bool  # MoTE family: the task goes to preprocess(task=...); dense methods get the prefix as prompt
    expert_pattern: str  # regex (re.search) of the expert parameters' names
    router_pattern: str | None = None
    base_max_seq_length: int | None = None  # the base model's limit, restored before the final save

    @property
    def prefixes(self) -> dict[str, str]:
        return self.routing.prompts()

    def parameter_counts(self) -> dict[str, int]:
        params = list(self.model.parameters())
        return {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
        }


class Method:
    """One training method. Subclasses set the class attributes and implement :meth:`build`.

    Attributes:
        name: the ``method:`` value of a recipe (``mote train --method NAME``); set by the registry.
        summary: one line for docs and ``--help``.
        routed: the model routes tasks itself (the task goes to ``preprocess(task=...)``; evaluated with its own
            routing, ``eval_mode == "auto"``); otherwise a dense model fed each task's prefix as its prompt
            (``eval_mode == "ic"``).
        mixed_batches: task-mixed batches and one loss at :meth:`mixed_batch_temperature` instead of TA-CL batches.
        router_aux_loss: the model adds a router load-balancing loss (which Matryoshka losses cannot carry).
        keeps_snapshots: the trainer keeps weight snapshots at ``select``'s candidate steps.
        supports_select: per-task selection (``select.enabled``, ``mote select``) applies.
        training_loop: ``"module:function"`` of a training loop of the method's own (the signature of
            :func:`mote.train.run_training`; the trainer imports it when it runs the method), or ``None``: the
            trainer's one-stage loop. A name rather than an import keeps the methods below the training layer.
    """

    name: str  # set by the registry (register_method)
    summary: ClassVar[str] = ""
    routed: ClassVar[bool] = True
    mixed_batches: ClassVar[bool] = False
    router_aux_loss: ClassVar[bool] = False
    keeps_snapshots: ClassVar[bool] = True
    supports_select: ClassVar[bool] = True
    training_loop: ClassVar[str | None] = None

    @property
    def eval_mode(self) -> str:
        """How :func:`mote.eval.load_encoder` evaluates the trained model: ``auto`` (its own routing) or ``ic``."""
        return "auto" if self.routed else "ic"

    def build(self, cfg: RunConfig, device: str = "cpu") -> MethodModel:
        """The model of ``cfg``, converted, sized (``max_seq_length``) and with its trainable set chosen."""
        raise NotImplementedError

    def problems(self, cfg: RunConfig) -> list[str]:
        """What this method cannot run with in ``cfg`` (one message each, naming the fix); checked up front."""
        return []

    def mixed_batch_temperature(self, cfg: RunConfig) -> float:
        """The one temperature of a method with task-mixed batches (:attr:`mixed_batches`)."""
        raise NotImplementedError(f"the {self.name} method has no task-mixed batches")

    def aux_loss_weight(self, cfg: RunConfig) -> float:
        """The weight of the routers' load-balancing loss in the TA-CL loss (0: none)."""
        return 0.0

    def learning_rate_mapping(self, cfg: RunConfig, built: MethodModel) -> dict[str, float]:
        """Parameter-name regex -> learning rate, for parameters that do not train at ``train.learning_rate``."""
        if cfg.train.expert_learning_rate is None:
            return {}
        return {built.expert_pattern: cfg.train.expert_learning_rate}

    def recipe_row(self, cfg: RunConfig) -> tuple[str, str, str]:
        """``(where, what trains, learning rate)`` for the experiment report's recipe table: the method's
        ``placement`` and ``trainable`` where its config has them (``trainable`` None: experts for a routed method,
        all for a dense one)."""
        where = getattr(cfg.method, "placement", "–")
        trainable = getattr(cfg.method, "trainable", None) or ("experts" if self.routed else "all")
        return where, trainable, f"{cfg.train.learning_rate:g}"

    def __repr__(self) -> str:
        return f"<method {self.name}: {type(self).__name__}>"


# ------------------------------------------------------------------------------------------------ building blocks
ROUTER_PATTERN = r"encoder\.layer\.\d+\.router\.weight$"


def hf_model(model: SentenceTransformer) -> nn.Module:
    """The Hugging Face encoder inside a sentence-transformers model (MoTE or dense)."""
    first = model[0]
    return getattr(first, "auto_model", None) or first.model


def expert_parameter_pattern(hf: nn.Module, layers: list[int]) -> str:
    """Regex matching the FFN + both norms of ``layers`` (the weights MoTE turns into experts).

    Example:
        >>> bool(re.search(expert_parameter_pattern(bert, [1]), "0.auto_model.encoder.layer.1.output.dense.weight"))
        ... # doctest: +SKIP
        True
    """
    from mote.experts import layer_slots

    slots = "|".join(re.escape(s) for s in layer_slots(hf))
    return rf"encoder\.layer\.({'|'.join(map(str, layers))})\.({slots})\.(weight|bias)$"


def freeze_all_but(model: nn.Module, patterns: list[str]) -> None:
    """``requires_grad`` only for parameters whose name matches one of ``patterns``."""
    compiled = [re.compile(p) for p in patterns]
    for name, param in model.named_parameters():
        param.requires_grad_(any(c.search(name) for c in compiled))


def mote_base(cfg: RunConfig, device: str = "cpu") -> SentenceTransformer:
    """``cfg.model.base`` converted to MoTE (experts at ``method.placement``, the recipe's routing table)."""
    import mote

    return mote.convert(cfg.model.base, placement=cfg.method.placement, routing=cfg.model.routing(), device=device)


def dense_base(cfg: RunConfig, device: str = "cpu") -> SentenceTransformer:
    """``cfg.model.base`` as a plain sentence-transformers model with the routing table's prefixes as prompts."""
    from sentence_transformers import SentenceTransformer

    from mote.base_models import resolve_model_path

    return SentenceTransformer(resolve_model_path(cfg.model.base), device=device,
                               prompts=cfg.model.routing().saved_prompts())


def placement_layers(cfg: RunConfig, model: SentenceTransformer) -> list[int]:
    """The layer indices ``method.placement`` names in a dense ``model``."""
    from mote.experts import resolve_placement, transformer_layers

    return resolve_placement(cfg.method.placement, len(transformer_layers(hf_model(model))))


def finish_model(
    cfg: RunConfig,
    name: str,
    model: SentenceTransformer,
    layers: list[int],
    routed: bool,
    freeze: bool,
    router_pattern: str | None = None,
    expert_pattern: str | None = None,
) -> MethodModel:
    """The :class:`MethodModel` of a built ``model``: the training-time ``max_seq_length`` applied (the base's own
    limit kept for the final save); with ``freeze``, only the expert parameters of ``layers`` (and the routers)
    train. ``expert_pattern`` overrides the FFN + norms pattern of ``layers``."""
    base_max_seq_length = model.max_seq_length
    if cfg.model.max_seq_length is not None:  # a training-time truncation; the saved model keeps the base's
        model.max_seq_length = cfg.model.max_seq_length
    pattern = expert_pattern if expert_pattern is not None else expert_parameter_pattern(hf_model(model), layers)
    if freeze:
        freeze_all_but(model, [pattern] + ([router_pattern] if router_pattern else []))
    return MethodModel(name, model, cfg.model.routing(), routed, pattern, router_pattern, base_max_seq_length)
