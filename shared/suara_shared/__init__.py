"""Suara's common package: event contracts, settings, Kafka and MongoDB plumbing, health, metrics and logs."""
