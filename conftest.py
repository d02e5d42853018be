"""Fixtures for every test suite: the real embedded broker and database, started by the test setup."""

import os

from hypothesis import settings

pytest_plugins = [
    "suara_devstack.testing",
    # Every log line of the run, in-process and from the service processes, scanned for personal data at the end.
    "suara_devstack.logscan",
]

# `make test` (and CI) draws the same examples every run, so its verdict does not depend on luck; to look for new
# failing inputs, run `HYPOTHESIS_PROFILE=explore make test` (random examples, several times as many).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
