"""Suara notifier service."""
