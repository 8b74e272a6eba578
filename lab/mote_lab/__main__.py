"""``python -m mote_lab``: the same as ``mote-lab``."""

import sys

from mote_lab.cli import main

sys.exit(main())
