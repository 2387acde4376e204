"""The local Emulsion stack on loopback, shared by `make up` and the pytest fixtures."""
