"""The training methods and their registry.

Every method is one module of this package behind one interface (:class:`~mote.methods.base.Method`: build the
model from a recipe, which parameters train and in which stages, its recipe checks, whether it keeps weight
snapshots for ``mote select``, how its trained model is evaluated) and owns its settings: a
:class:`~mote.methods.base.MethodConfig` subclass, a recipe's ``method:`` section. The registry maps a name to
both, the way PEFT maps a tuner type to its config and model classes. The trainer, the experiment runner, the
evaluation and the CLI ask this registry and never branch on a method's name. A new method is one module plus one
line in the registry below (``ic_matched.py`` is the worked example). One recipe, every method trained by the
same trainer on the same batches:

============== ======================================================= ========== ================ ================
method         model                                                   batches    temperature      settings
============== ======================================================= ========== ================ ================
mote           MoTE (experts at ``placement``), task routing           one task   per task (TA-CL) placement,
                                                                                                   trainable
ic             the dense base, same task prefixes (instruction-cond.)  one task   per task         none
static         MoTE, task routing                                      task-mixed ``temperature``  + temperature
tlr            MoTE experts + learned top-1 token routers (+ LB loss)  one task   per task         + aux_loss_weight,
                                                                                                   router_learning_rate
ic-matched     the dense base + prefixes, training only the FFN and    one task   per task         placement
               both norms of the ``placement`` layers
tsembed        frozen base + MoE-LoRA experts and routers; stage 1 +   one task   per task         lora, eans,
               EANS stage 2 (:mod:`mote.train.tsembed`)                                            stage1(_fraction),
                                                                                                   stage2
tsembed-noeans the same, stage 1 only for the same total steps         one task   per task         as tsembed
============== ======================================================= ========== ================ ================

``trainable: experts`` (the default of the MoTE methods) trains only the expert parameters (plus the routers for
``tlr``): the weights ``ic-matched`` trains in the dense model. With it, a task whose expert sees no training data
keeps the base model's embeddings exactly; ``trainable: all`` trains every weight.

Example:
    >>> from mote.methods import METHODS, get_method, method_config
    >>> list(METHODS)
    ['mote', 'ic', 'static', 'tlr', 'ic-matched', 'tsembed', 'tsembed-noeans']
    >>> get_method("static").mixed_batches, get_method("ic").routed
    (True, False)
    >>> method_config({"name": "static", "placement": "every"})
    StaticConfig(name='static', placement='every', trainable=None, temperature=0.05)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mote.methods.base import Method, MethodConfig, MethodModel
from mote.methods.ic import ICConfig, ICMethod
from mote.methods.ic_matched import ICMatchedConfig, ICMatchedMethod
from mote.methods.mote import MoteConfig, MoteMethod
from mote.methods.static import StaticConfig, StaticMethod
from mote.methods.tlr import TLRConfig, TLRMethod
from mote.methods.tsembed import TSEmbedMethod, TSEmbedNoEANSMethod

METHODS: dict[str, Method] = {}  # name -> the method (in registration order)
METHOD_CONFIGS: dict[str, type[MethodConfig] | str] = {}  # name -> its config class (or "module:Class")
DEFAULT_METHOD = "mote"


class UnknownMethodError(KeyError):
    """A method name the registry does not hold; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_method(
    name: str, config_cls: type[MethodConfig] | str, method_cls: type[Method], replace: bool = False
) -> Method:
    """Register the method ``name``: its settings (``config_cls``, a :class:`MethodConfig` subclass) and its
    behaviour (``method_cls``, a :class:`Method` subclass, instantiated here). ``replace=True`` overrides a
    registered one. Returns the method object.

    ``config_cls`` may be ``"module:Class"``, imported on first use: a config built on a package the registry must
    not load at import (TSEmbed's, on :mod:`mote.lora` and PEFT)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a method needs a name, got {name!r}")
    lazy = isinstance(config_cls, str) and config_cls.count(":") == 1
    if not lazy and not (isinstance(config_cls, type) and issubclass(config_cls, MethodConfig)):
        raise ValueError(f"method {name!r}: its config class must subclass mote.methods.base.MethodConfig, "
                         f"got {config_cls!r}")
    if not (isinstance(method_cls, type) and issubclass(method_cls, Method)):
        raise ValueError(f"method {name!r}: its method class must subclass mote.methods.base.Method, "
                         f"got {method_cls!r}")
    if name in METHODS and not replace:
        raise ValueError(f"a method named {name!r} is already registered ({METHODS[name]!r})")
    method = method_cls()
    method.name = name
    METHODS[name] = method
    METHOD_CONFIGS[name] = config_cls
    return method


def get_method(name: str) -> Method:
    """The registered method ``name``; :class:`UnknownMethodError` lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method {name!r}; known: {list(METHODS)}") from None


def method_config_class(name: str) -> type[MethodConfig]:
    """The config class of the registered method ``name``; :class:`UnknownMethodError` lists the known ones."""
    get_method(name)
    cls = METHOD_CONFIGS[name]
    if isinstance(cls, str):
        import importlib

        module, _, attr = cls.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, MethodConfig)):
            raise TypeError(f"method {name!r}: {METHOD_CONFIGS[name]} is not a MethodConfig subclass")
        METHOD_CONFIGS[name] = cls
    return cls


def method_settings(value: Any) -> Any:
    """A recipe's ``method:`` value in its mapping form: ``mote`` -> ``{name: mote}``; a mapping without ``name``
    names the default method. Anything else is returned as it is (for the validation to refuse)."""
    if value is None:
        return {"name": DEFAULT_METHOD}
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, MethodConfig):
        return value.model_dump()
    if isinstance(value, Mapping):
        return {"name": DEFAULT_METHOD, **value}
    return value


def method_config(value: Any, steps: int | None = None) -> MethodConfig:
    """The validated config of a recipe's ``method:`` value (a name, a mapping with ``name``, or a config). With
    ``steps`` (the run's ``train.steps``), settings derived from the step budget are filled in first
    (:meth:`MethodConfig.for_steps`). Raises :class:`UnknownMethodError` or pydantic's ``ValidationError``."""
    if isinstance(value, MethodConfig) and steps is None:
        return value
    settings = method_settings(value)
    if not isinstance(settings, Mapping):
        raise ValueError(f"method: give a method name or a mapping {{name: ..., <its settings>}}, got {value!r}")
    name = settings.get("name")
    if not isinstance(name, str):
        raise ValueError(f"method.name: a method name is a string, got {name!r}")
    cls = method_config_class(name)
    if steps is not None:
        settings = cls.for_steps(dict(settings), steps)
    return cls.model_validate(settings)


# The registry: one line per method.
register_method("mote", MoteConfig, MoteMethod)
register_method("ic", ICConfig, ICMethod)
register_method("static", StaticConfig, StaticMethod)
register_method("tlr", TLRConfig, TLRMethod)
register_method("ic-matched", ICMatchedConfig, ICMatchedMethod)
register_method("tsembed", "mote.methods.tsembed_config:TSEmbedMethodConfig", TSEmbedMethod)
register_method("tsembed-noeans", "mote.methods.tsembed_config:TSEmbedMethodConfig", TSEmbedNoEANSMethod)

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "METHOD_CONFIGS",
    "Method",
    "MethodConfig",
    "MethodModel",
    "UnknownMethodError",
    "get_method",
    "method_config",
    "method_config_class",
    "method_settings",
    "register_method",
]
