"""``static``: the MoTE model and routing, trained on task-mixed batches with one temperature
(``loss.static_temperature``): TA-CL's batching ablation.

Example:
    >>> from mote.methods import get_method
    >>> get_method("static").mixed_batches
    True
"""

from __future__ import annotations

from mote.methods.mote import MoteMethod


class StaticMethod(MoteMethod):
    """MoTE, task-mixed batches, one loss at ``loss.static_temperature``."""

    name = "static"
    summary = "MoTE with task-mixed batches and one temperature (the TA-CL ablation)"
    mixed_batches = True
