"""The contracts every Emulsion part shares, as data: nothing here talks to a server.

Names, keys, subjects and message ids, messages, manifests, records and permissions are
built and parsed here; `emulsion_runtime` holds the plumbing that carries them.
"""
