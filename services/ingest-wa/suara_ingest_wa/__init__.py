"""Suara ingest-wa service."""
