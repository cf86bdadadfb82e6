"""Ingest: feeds publish over HTTP (and, later, into a Redis inbox) with credentials."""
