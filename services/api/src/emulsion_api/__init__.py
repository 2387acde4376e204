"""Emulsion HTTP API (FastAPI): presigned direct uploads, 202 Accepted ingests, status."""
