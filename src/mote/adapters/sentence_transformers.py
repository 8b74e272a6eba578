"""sentence-transformers' map of module classes it may load without ``trust_remote_code``.

sentence-transformers 6 imports a ``modules.json`` class outside its own namespace only with
``trust_remote_code=True``, unless the class is in ``BaseModel._module_classes`` (its map of already-imported module
classes). There is no public registration API; adding mote's module classes there means the code that runs is the
installed ``mote`` the user imported, never code shipped inside a model folder. ``tests/test_adapters.py`` checks
that the map still exists and is what loading consults.

Example:
    >>> register_module_class(MoTETransformer)   # doctest: +SKIP
"""

from __future__ import annotations


def register_module_class(cls: type) -> None:
    """Let ``SentenceTransformer(path)`` load folders of module class ``cls`` without ``trust_remote_code``."""
    from sentence_transformers.base.model import BaseModel

    ref = f"{cls.__module__}.{cls.__qualname__}"
    if BaseModel._module_classes.get(ref) is not cls:
        BaseModel._module_classes = {**BaseModel._module_classes, ref: cls}


def registered_module_classes() -> dict[str, type]:
    """The module classes sentence-transformers loads without ``trust_remote_code`` (class path -> class)."""
    from sentence_transformers.base.model import BaseModel

    return dict(BaseModel._module_classes)
