"""`python -m suara_ingest_wa`: run the WhatsApp webhook service."""

from suara_ingest_wa.main import run

run()
