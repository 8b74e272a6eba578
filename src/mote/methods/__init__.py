"""The training methods (the arms of the comparison) and their registry.

Every method is one module of this package behind one interface (:class:`~mote.methods.base.Method`: build the
model from a recipe, which parameters train and in which stages, its recipe checks, whether it keeps weight
snapshots for ``mote select``, how its trained model is evaluated). The trainer, the experiment runner, the
evaluation and the CLI ask this registry and never branch on a method's name. A new method is one module plus one
line in the registry below (``ic_matched.py`` is the worked example).

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
