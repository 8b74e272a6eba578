"""sentence-transformers' map of module classes it may load without ``trust_remote_code``.

sentence-transformers 6 imports a ``modules.json`` class outside its own namespace only with
``trust_remote_code=True``, unless the class is in ``BaseModel._module_classes`` (its map of already-imported module
classes, read with ``.get(class_ref)``). There is no public registration API; adding mote's module classes there
means the code that runs is the installed ``mote`` the user imported, never code shipped inside a model folder.

A class can also be registered *lazily* by its reference (:func:`register_lazy_module_class`): the map then imports
its module the first time a folder names it, so ``import mote`` need not import PEFT or the token-routing ablation
to let ``SentenceTransformer(path)`` load their folders. ``tests/test_adapters.py`` checks that the map still
exists and is what loading consults.

Example:
    >>> register_module_class(MoTETransformer)                                          # doctest: +SKIP
    >>> register_lazy_module_class("mote.lora.st.TSEmbedTransformer",
    ...                            "mote.lora.st:TSEmbedTransformer")                    # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping


class ModuleClassMap(Mapping[str, type]):
    """Class reference -> module class, where some classes are imported on their first lookup.

    ``lazy`` maps a reference (``"mote.lora.st.TSEmbedTransformer"``) to ``"module:attribute"``; a lookup of it
    imports the module (whose import may register the class itself) and caches the class.
    """

    def __init__(self, classes: Mapping[str, type], lazy: Mapping[str, str] | None = None) -> None:
        self.classes: dict[str, type] = dict(classes)
        self.lazy: dict[str, str] = dict(lazy or {})
        self.removed: dict[str, Callable[[], Exception]] = {}  # ref -> the error its lookup raises

    def __getitem__(self, ref: str) -> type:
        if ref in self.removed:
            raise self.removed[ref]()
        if ref not in self.classes and ref in self.lazy:
            module, _, name = self.lazy[ref].partition(":")
            self.classes[ref] = getattr(importlib.import_module(module), name)
        return self.classes[ref]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.classes), **dict.fromkeys(self.lazy)})

    def __len__(self) -> int:
        return len(self.classes.keys() | self.lazy.keys())

    def is_loaded(self, ref: str) -> bool:
        """Whether ``ref``'s class is imported already (a lazy one not looked up yet is not)."""
        return ref in self.classes


def _map() -> ModuleClassMap:
    """sentence-transformers' map as a :class:`ModuleClassMap` (installed on the first registration)."""
    from sentence_transformers.base.model import BaseModel

    current = BaseModel._module_classes
    if not isinstance(current, ModuleClassMap):
        current = ModuleClassMap(current)
        BaseModel._module_classes = current
    return current


def register_module_class(cls: type, ref: str | None = None) -> None:
    """Let ``SentenceTransformer(path)`` load folders of module class ``cls`` without ``trust_remote_code``.

    ``ref``: the ``modules.json`` type to resolve to ``cls`` (default: the class's own module path and name).
    """
    _map().classes[ref or f"{cls.__module__}.{cls.__qualname__}"] = cls


def register_lazy_module_class(ref: str, target: str) -> None:
    """Like :func:`register_module_class` for the class at ``target`` (``"module:attribute"``), imported only when a
    folder whose ``modules.json`` names ``ref`` is loaded."""
    module, sep, name = target.partition(":")
    if not (module and sep and name):
        raise ValueError(f"target {target!r}: write it as 'package.module:ClassName'")
    _map().lazy[ref] = target


def register_removed_module_class(ref: str, error: Callable[[], Exception]) -> None:
    """Make loading a folder whose ``modules.json`` names ``ref`` (a class path no longer provided) raise
    ``error()``, the error that names the fix, rather than sentence-transformers' advice to trust remote code."""
    _map().removed[ref] = error


def registered_module_classes() -> dict[str, type]:
    """The module classes sentence-transformers loads without ``trust_remote_code`` (class path -> class).

    Resolves (imports) the lazily registered ones; :func:`loaded_module_classes` does not."""
    return dict(_map())


def loaded_module_classes() -> dict[str, type]:
    """The registered module classes imported so far (lazy ones not looked up yet are left out)."""
    return dict(_map().classes)
