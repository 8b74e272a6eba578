"""The weights a selection chooses among: the base model's, the trained endpoints, and blends of the two.

A trained run has *endpoints*: ``final`` (its ``model/``) and the snapshots kept during training (``step-N``,
:mod:`mote.train.snapshots`); read at an earlier step (``at_step``), ``final`` is that step's snapshot and the
endpoints are the snapshots before it. A :class:`Setting` ``(endpoint, alpha)`` of a parameter group is
``base + alpha * (endpoint - base)`` (WiSE-FT); alpha 0 is the base exactly and alpha 1 the endpoint exactly
(copied, not computed, so both are bitwise). The groups of a MoTE model are its shared (non-expert) weights and
one group per expert (slice ``e`` of every stacked expert weight); a dense model has the shared group only.

Example:
    >>> space = WeightSpace.from_run("runs/train/mote")                 # doctest: +SKIP
    >>> space.set(1, Setting("final", 0.5))                             # doctest: +SKIP
    >>> space.moved(1)["relative"]                                      # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer

from mote.api import encoder_of
from mote.train.snapshots import list_snapshots

SHARED = "shared"
Group = str | int  # "shared" or an expert index


class SelectionError(ValueError):
    """A run folder or a request that selection cannot work with; the message names the fix."""


@dataclass(frozen=True, order=True)
class Setting:
    """``base + alpha * (endpoint - base)`` of one parameter group."""

    endpoint: str
    alpha: float

    @property
    def is_base(self) -> bool:
        return self.alpha == 0

    @property
    def label(self) -> str:
        """``base``, ``final``, ``final@0.5``, ``step-50``, ..."""
        if self.is_base:
            return "base"
        return self.endpoint if self.alpha == 1 else f"{self.endpoint}@{self.alpha:g}"

    @classmethod
    def parse(cls, label: str) -> Setting:
        """The inverse of :attr:`label`.

        >>> Setting.parse("final@0.25"), Setting.parse("base").is_base
        (Setting(endpoint='final', alpha=0.25), True)
        """
        if label == "base":
            return BASE
        endpoint, _, alpha = label.partition("@")
        return cls(endpoint, float(alpha) if alpha else 1.0)


BASE = Setting("base", 0.0)


def blend(base: torch.Tensor, end: torch.Tensor, alpha: float) -> torch.Tensor:
    """``base + alpha * (end - base)``; alpha 0 / 1 return ``base`` / ``end`` themselves (bitwise)."""
    if alpha == 0:
        return base
    if alpha == 1:
        return end
    return torch.lerp(base, end, float(alpha))


class WeightSpace:
    """A loaded model whose parameter groups can be set to any :class:`Setting`, in place.

    Args:
        model: the trained sentence-transformers model (MoTE or dense); its encoder's parameters are overwritten.
        base: the base model's encoder state dict, in the model's key space (MoTE: upcycled, every expert = base).
        endpoints: ``{"final": state dict, "step-N": state dict, ...}`` of the trained encoder.
    """

    def __init__(self, model: SentenceTransformer, base: dict[str, torch.Tensor],
                 endpoints: dict[str, dict[str, torch.Tensor]]) -> None:
        from mote.experts import expert_modules

        self.model = model
        self.hf = encoder_of(model)
        self.params = dict(self.hf.named_parameters())
        experts = expert_modules(self.hf)
        stacked = {id(p) for m in experts for p in m.parameters(recurse=False)}
        self.stacked = [n for n, p in self.params.items() if id(p) in stacked]
        self.shared = [n for n, p in self.params.items() if id(p) not in stacked]
        self.num_experts = experts[0].num_experts if experts else 0
        self.base = {n: base[n].detach().to(self.params[n].device, self.params[n].dtype) for n in self.params
                     if self._check(n, base, "the base model")}
        self.endpoints = {
            name: {n: sd[n].detach().to(self.params[n].device, self.params[n].dtype) for n in self.params
                   if self._check(n, sd, f"endpoint {name!r}")}
            for name, sd in endpoints.items()
        }
        self.current: dict[Group, Setting | None] = dict.fromkeys(self.groups(), None)

    def _check(self, name: str, state: dict[str, torch.Tensor], what: str) -> bool:
        if name not in state:
            raise SelectionError(f"{what} has no weight {name!r}: it is not the model this run trained")
        if tuple(state[name].shape) != tuple(self.params[name].shape):
            raise SelectionError(f"{what}: {name!r} has shape {tuple(state[name].shape)}, the model "
                                 f"{tuple(self.params[name].shape)}")
        return True

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str = "cpu", at_step: int | None = None) -> WeightSpace:
        """The space of a ``mote train`` run folder: ``trained/`` (else ``model/``: the final weights),
        ``snapshots/`` and the recipe's base.

        ``at_step``: the run as it stood at that optimiser step: the snapshot of the step is the ``final`` endpoint
        (and the model's weights), and only the snapshots before it are endpoints. A step the run kept no snapshot
        of is a :class:`SelectionError` listing the steps it kept."""
        import yaml
        from safetensors.torch import load_file

        from mote.api import load_snapshot_weights, run_model_folder, snapshot_source
        from mote.train.config import CONFIG_FILE, parse_config

        run = Path(run_dir)
        model_dir = run_model_folder(run, SelectionError)  # the raw final weights
        saved = model_dir / CONFIG_FILE
        if not saved.is_file():
            raise SelectionError(f"{model_dir} has no {CONFIG_FILE}: selection needs the recipe the run trained")
        cfg = parse_config(yaml.safe_load(saved.read_text(encoding="utf-8")), str(saved), check_files=False)
        kept = list_snapshots(run)
        if at_step is not None:
            name = f"step-{at_step}"
            if name not in kept:
                steps = [int(n.removeprefix("step-")) for n in kept]
                raise SelectionError(f"{run} kept no weight snapshot at step {at_step}: it kept steps "
                                     f"{steps or 'none'} (its recipe's select.snapshots); choose one of them")
            _, weights = snapshot_source(kept[name].parent)
            kept = {n: p for n, p in kept.items() if int(n.removeprefix("step-")) < at_step}
        model, base = load_run_model(model_dir, cfg.model.base, device)
        if at_step is not None:
            load_snapshot_weights(model, weights)
        endpoints = {"final": {k: v.detach().clone() for k, v in encoder_of(model).state_dict().items()}}
        for name, path in kept.items():
            endpoints[name] = load_file(str(path))
        space = cls(model, base, endpoints)
        space.run_dir, space.recipe, space.model_dir, space.at_step = run, cfg, model_dir, at_step
        return space

    # ------------------------------------------------------------------------------------------- groups
    @property
    def routed(self) -> bool:
        """A MoTE model (per-expert groups), not a dense one."""
        return self.num_experts > 0

    def groups(self) -> list[Group]:
        return [SHARED, *range(self.num_experts)]

    def endpoint_names(self) -> list[str]:
        return list(self.endpoints)

    def _targets(self, group: Group) -> list[tuple[str, int | None]]:
        if group == SHARED:
            return [(n, None) for n in self.shared]
        return [(n, int(group)) for n in self.stacked]

    def _value(self, name: str, e: int | None, setting: Setting) -> torch.Tensor:
        base = self.base[name] if e is None else self.base[name][e]
        if setting.is_base:
            return base
        if setting.endpoint not in self.endpoints:
            raise SelectionError(f"unknown endpoint {setting.endpoint!r}; this run has {self.endpoint_names()}")
        end = self.endpoints[setting.endpoint][name]
        return blend(base, end if e is None else end[e], setting.alpha)

    @torch.no_grad()
    def set(self, group: Group, setting: Setting) -> None:
        """Write ``setting`` into ``group``'s weights (a no-op if it is already there)."""
        if self.current.get(group) == setting:
            return
        for name, e in self._targets(group):
            dst = self.params[name] if e is None else self.params[name][e]
            dst.copy_(self._value(name, e, setting))
        self.current[group] = setting

    def set_all(self, setting: Setting) -> None:
        for g in self.groups():
            self.set(g, setting)

    @torch.no_grad()
    def average_experts(self, experts: list[int]) -> None:
        """Give ``experts`` the mean of their current weights (expert consolidation, before compaction)."""
        for name in self.stacked:
            p = self.params[name]
            p[experts] = p[experts].mean(dim=0, keepdim=True).expand(len(experts), *p.shape[1:])
        for e in experts:
            self.current[e] = None  # no longer a grid setting

    def shared_trained(self) -> bool:
        """Whether training moved any shared weight (``trainable: all``) or left them at the base."""
        final = self.endpoints["final"]
        return any(not torch.equal(final[n], self.base[n]) for n in self.shared)

    @torch.no_grad()
    def moved(self, group: Group) -> dict[str, float]:
        """How far ``group``'s current weights are from the base: Frobenius norm of the change, and that norm over
        the final weights' (1.0 = moved as far as training did)."""
        now = sq_final = 0.0
        for name, e in self._targets(group):
            cur = self.params[name] if e is None else self.params[name][e]
            base = self.base[name] if e is None else self.base[name][e]
            fin = self.endpoints["final"][name] if e is None else self.endpoints["final"][name][e]
            now += float((cur - base).double().pow(2).sum())
            sq_final += float((fin - base).double().pow(2).sum())
        return {"norm": now ** 0.5, "relative": (now / sq_final) ** 0.5 if sq_final > 0 else 0.0}

    def parameter_count(self, group: Group) -> int:
        return sum(self.params[n].numel() if e is None else self.params[n][e].numel() for n, e in self._targets(group))


def load_run_model(model_dir: Path, base_name: str, device: str = "cpu") -> tuple[SentenceTransformer, dict[str, Any]]:
    """The trained model of a run and its base's encoder state dict in the same key space (MoTE: upcycled)."""
    import mote
    from mote.base_models import resolve_model_path
    from mote.eval.encoders import _routed_module
    from mote.model import CONFIG_NAME, MoTETransformer

    if (model_dir / CONFIG_NAME).is_file():
        model = mote.load(model_dir, device=device)
        module = _routed_module(model)
        if type(module) is not MoTETransformer:
            raise SelectionError(
                f"{model_dir} holds a {type(module).__name__}: per-task selection needs sequence-routed MoTE experts "
                "(token-routed models mix experts within a text)")
        base_model = mote.convert(base_name, placement=module.expert_layers, routing=module.routing, device=device)
    else:
        from mote.eval.encoders import _routed_folder_loader

        if _routed_folder_loader(model_dir) is not None:
            raise SelectionError(f"{model_dir} is a token-routed (TSEmbed) model: per-task selection does not apply")
        model = SentenceTransformer(str(model_dir), device=device)
        base_model = SentenceTransformer(resolve_model_path(base_name), device=device)
    return model, {k: v.detach().clone() for k, v in encoder_of(base_model).state_dict().items()}
