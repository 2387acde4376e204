"""Emulsion janitor: garbage-collects superseded, abandoned and deleted objects."""
