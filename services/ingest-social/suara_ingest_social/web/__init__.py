"""The web channel: the citizen form, its JSON twin, and the public status page."""
