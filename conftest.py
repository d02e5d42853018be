"""Fixtures for every test suite: the real embedded broker and database, started by the test setup."""

pytest_plugins = ["suara_devstack.testing"]
