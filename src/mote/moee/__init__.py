"""mote.moee (under construction)."""
