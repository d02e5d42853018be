"""Suara ingest-social service."""
