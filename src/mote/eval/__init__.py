"""mote.eval (under construction)."""
