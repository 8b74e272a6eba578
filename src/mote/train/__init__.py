"""mote.train (under construction)."""
