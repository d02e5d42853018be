"""`python -m suara_ingest_social`: serve the ingest-social service."""

from suara_ingest_social.main import run

if __name__ == "__main__":
    run()
