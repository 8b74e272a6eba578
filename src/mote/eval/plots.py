"""matplotlib for the figures (``mote compare`` and ``mote similarity`` plots, the experiment reports): an optional
extra, ``pip install 'mote[lab]'``; encoding, training and selection do not need it.

Every figure gets pyplot from :func:`pyplot`, inside the function that draws (never at import time), so a missing
matplotlib fails only the figure, with one error that names the extra.

Example:
    >>> plt = pyplot()                 # doctest: +SKIP
    >>> fig, ax = plt.subplots()       # doctest: +SKIP
"""

from __future__ import annotations

LAB_EXTRA = "pip install 'mote[lab]'"


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or an ``ImportError`` naming the extra."""
    try:
        import matplotlib
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "matplotlib":
            raise
        raise ImportError(f"figures need matplotlib, which is not installed (the lab extra): {LAB_EXTRA}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


__all__ = ["LAB_EXTRA", "pyplot"]
