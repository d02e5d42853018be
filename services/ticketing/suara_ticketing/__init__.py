"""Suara ticketing service."""
