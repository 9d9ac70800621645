"""Fixtures: local servers on 127.0.0.1 that stop by themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.servers import LocalServer


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    local = await LocalServer().start()
    try:
        yield local
    finally:
        await local.stop()
