"""`python -m suara_devstack.sandbox`: run the channel sandbox."""

from suara_devstack.sandbox.app import run

if __name__ == "__main__":
    run()
