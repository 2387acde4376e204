"""Emulsion controller: reconciles IngestJobs and fans their items out over JetStream."""
