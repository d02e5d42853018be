"""`python -m suara_notifier`: run the notifier service."""

from suara_notifier.main import run

if __name__ == "__main__":
    run()
