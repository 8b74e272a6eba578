"""Compatibility name of :mod:`mote.ablations.tlr` (token-level routing, the paper's ablation).

Kept because TLR folders saved before the move name ``mote.tlr.TLRTransformer`` in their ``modules.json`` (loaded
with ``trust_remote_code=True`` without ``import mote``, sentence-transformers imports that path), and for code
written against the old public name. New code imports :mod:`mote.ablations.tlr`.

Example:
    >>> import mote.tlr, mote.ablations.tlr
    >>> mote.tlr.TLRTransformer is mote.ablations.tlr.TLRTransformer
    True
"""

from mote.ablations.tlr import *  # noqa: F403
from mote.ablations.tlr import __all__  # noqa: F401
