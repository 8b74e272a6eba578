"""Old name of :mod:`mote.atomic` (crash-safe writes) and :mod:`mote.files` (readers, logs); new code imports those.

Kept for code written against ``mote.io`` (the README named ``mote.io.atomic_dir``).

Example:
    >>> import mote.atomic, mote.io
    >>> mote.io.atomic_dir is mote.atomic.atomic_dir
    True
"""

from mote.atomic import *  # noqa: F403
from mote.atomic import __all__ as _atomic
from mote.files import *  # noqa: F403
from mote.files import __all__ as _files

__all__ = [*_atomic, *_files]
