"""The emulsion command line client."""
