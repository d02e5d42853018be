"""The channel sandbox: a local stand-in for the Graph API and the X API that records every call it gets."""
