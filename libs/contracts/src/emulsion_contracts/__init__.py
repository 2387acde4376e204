"""The contracts every Emulsion part shares: nothing here talks to a server by itself.

docs/architecture.md is the prose form of this package; a change to either changes both.
"""
