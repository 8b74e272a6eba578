"""CLI verbs of mote.train."""


def register(subparsers) -> None:
    """Add this subsystem's verbs to the `mote` parser."""
