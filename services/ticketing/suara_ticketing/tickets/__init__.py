"""Tickets: models, the domain service (the only writer of tickets) and the API router."""
