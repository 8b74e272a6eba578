"""CLI verbs of mote.eval."""


def register(subparsers) -> None:
    """Add this subsystem's verbs to the `mote` parser."""
