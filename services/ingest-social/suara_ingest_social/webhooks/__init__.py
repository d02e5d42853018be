"""Social-media webhooks and the X poller: verify, normalize, publish."""
