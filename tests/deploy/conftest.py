"""Fixtures of the deploy tests: each overlay rendered once; deploykit (beside this file) holds the helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The tests import their helpers as `deploykit`: under pytest's importlib mode a test folder is not on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploykit import OVERLAYS, Rendered, rendered


@pytest.fixture(params=OVERLAYS, scope="session")
def overlay(request: pytest.FixtureRequest) -> Rendered:
    """Each overlay (dev, prod) as kubectl kustomize renders it."""
    result: Rendered = rendered(request.param)
    return result


@pytest.fixture(scope="session")
def prod() -> Rendered:
    return rendered("prod")


@pytest.fixture(scope="session")
def dev() -> Rendered:
    return rendered("dev")
