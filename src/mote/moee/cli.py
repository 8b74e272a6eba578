"""CLI verbs of mote.moee."""


def register(subparsers) -> None:
    """Add this subsystem's verbs to the `mote` parser."""
