"""`python -m suara_ticketing`: serve the ticket API and run the inbound consumer."""

from .main import run

run()
