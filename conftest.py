"""Fixtures for every test suite: the real embedded broker and database, started by the test setup."""

pytest_plugins = [
    "suara_devstack.testing",
    # Every log line of the run, in-process and from the service processes, scanned for personal data at the end.
    "suara_devstack.logscan",
]
