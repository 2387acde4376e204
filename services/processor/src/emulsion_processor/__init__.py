"""Emulsion processor: a JetStream pull worker that turns staged uploads into live assets."""
