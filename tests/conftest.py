"""Fixtures: local servers on 127.0.0.1 that stop by themselves; every manifest judged."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from tests import votlint
from tests.servers import LocalServer


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    local = await LocalServer().start()
    try:
        yield local
    finally:
        await local.stop()


@pytest.fixture(scope="session", autouse=True)
def every_manifest_passes_votlint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: every manifest VOTable the tests wrote, judged by STILTS votlint
    and astropy (tests/votlint.py); any report fails the run."""
    yield
    manifests = votlint.written_under(tmp_path_factory.getbasetemp())
    if not manifests:
        return
    if shutil.which("stilts") is None and os.environ.get("VOHARVEST_STILTS") != "required":
        return
    reports = votlint.judge(manifests)
    assert not reports, "\n".join(
        f"{path}:\n  " + "\n  ".join(lines) for path, lines in reports.items()
    )
