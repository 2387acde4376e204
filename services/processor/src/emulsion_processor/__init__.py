"""Emulsion processor: streams sources to scratch and makes the styles with Pillow."""
