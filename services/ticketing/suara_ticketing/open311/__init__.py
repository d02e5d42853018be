"""Open311 GeoReport v2 under `/open311/v2/`: the categories as services, requests to read and to file."""

from .router import install

__all__ = ["install"]
