"""The paper's ablations of MoTE: variants compared against task routing, kept out of the core namespace.

* :mod:`mote.ablations.tlr`: token-level routing (TLR), a learned top-1 router per expert layer over the same
  upcycled experts (the ``tlr`` training method, :mod:`mote.methods.tlr`).

Example:
    >>> from mote.ablations import tlr
    >>> tlr.ROUTER_NAME
    'router'
"""
