"""The training methods (the arms of the comparison) and their registry.

Every method is one module of this package behind one interface (:class:`~mote.methods.base.Method`: build the
model from a recipe, which parameters train and in which stages, its recipe checks, whether it keeps weight
snapshots for ``mote select``, how its trained model is evaluated). The trainer, the experiment runner, the
evaluation and the CLI ask this registry and never branch on a method's name. A new method is one module plus one
line in the registry below (``ic_matched.py`` is the worked example). One recipe, every arm trained by the same
trainer on the same batches:

============ ======================================================= ============= ==========================
arm          model                                                   batches       temperature
============ ======================================================= ============= ==========================
mote         MoTE (experts at ``model.placement``), task routing      one task      per task (TA-CL)
ic           the dense base, same task prefixes (instruction-cond.)  one task      per task
static       MoTE, task routing                                      task-mixed    one (``loss.static_...``)
tlr          MoTE experts + learned top-1 token routers (+ LB loss)  one task      per task
ic-matched   the dense base + prefixes, training only the FFN and    one task      per task
             both norms of the expert layers (everything else frozen)
tsembed      frozen base + MoE-LoRA experts and routers              one task      per task
             (``tsembed.lora``); stage 1 + EANS stage 2
tsembed-     the same, stage 1 only for the same total steps         one task      per task
noeans       (the ablation without EANS)
============ ======================================================= ============= ==========================

The TSEmbed arms (:mod:`mote.methods.tsembed`, trained by :mod:`mote.train.tsembed`) always train only the
adapters (``model.placement`` and ``model.trainable`` do not apply); their learning rates and the trainable set of
each stage come from ``tsembed.stage1`` / ``tsembed.stage2``. ``model.trainable: experts`` trains only the expert
parameters of the MoTE arms (plus the routers for ``tlr``): the weights ``ic-matched`` trains in the dense model.
With it, a task whose expert sees no training data keeps the base model's embeddings exactly.

Example:
    >>> from mote.methods import METHODS, get_method
    >>> list(METHODS)
    ['mote', 'ic', 'static', 'tlr', 'ic-matched', 'tsembed', 'tsembed-noeans']
    >>> get_method("static").mixed_batches, get_method("ic").routed
    (True, False)
"""

from __future__ import annotations

from mote.methods.base import ArmModel, Method
from mote.methods.ic import ICMethod
from mote.methods.ic_matched import ICMatchedMethod
from mote.methods.mote import MoteMethod
from mote.methods.static import StaticMethod
from mote.methods.tlr import TLRMethod
from mote.methods.tsembed import TSEmbedMethod, TSEmbedNoEANSMethod

METHODS: dict[str, Method] = {}


class UnknownMethodError(KeyError):
    """A method name the registry does not hold; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_method(method: Method, replace: bool = False) -> Method:
    """Add ``method`` to the registry under ``method.name`` (``replace=True`` to override a registered one)."""
    name = getattr(method, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{type(method).__name__} has no name: set the class attribute `name`")
    if name in METHODS and not replace:
        raise ValueError(f"a method named {name!r} is already registered ({METHODS[name]!r})")
    METHODS[name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method ``name``; :class:`UnknownMethodError` lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethodError(f"unknown arm {name!r}; known: {list(METHODS)}") from None


# The registry: one line per method.
register_method(MoteMethod())
register_method(ICMethod())
register_method(StaticMethod())
register_method(TLRMethod())
register_method(ICMatchedMethod())
register_method(TSEmbedMethod())
register_method(TSEmbedNoEANSMethod())

__all__ = ["METHODS", "ArmModel", "Method", "UnknownMethodError", "get_method", "register_method"]
