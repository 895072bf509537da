"""Fixtures of the authentication tests."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def custom_domain() -> str:
    """A host name no other test uses."""
    return f"api.{uuid.uuid4().hex[:12]}.example"
