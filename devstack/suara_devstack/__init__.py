"""Runs Suara on one machine: the embedded broker and database, the four services and the channel sandbox."""
