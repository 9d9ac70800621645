"""No network: the harvest fails at once, naming every registry endpoint it tried.

Only 127.0.0.1 (a port where nothing listens) and a ``.invalid`` name (RFC 2606:
never resolves) are used; no outside address is ever contacted.
"""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli import voharvest


async def test_harvest_without_network_fails_once_naming_every_endpoint(tmp_path: Path):
    refused, unknown = "http://127.0.0.1:9/tap", "http://registry.voharvest.invalid/tap"
    code, _, err = await voharvest(
        "harvest",
        "--servicetype",
        "sia",
        "--registry",
        refused,
        "--registry",
        unknown,
        "--target",
        "10,20",
        "--size",
        "0.1",
        "--out",
        tmp_path / "out",
        "--no-progress",
    )
    assert code == 1
    message = err.strip().splitlines()
    assert message[0].startswith("voharvest: failed: no registry answered (2 tried)")
    assert any(refused in line and "refused" in line for line in message)
    assert any(unknown in line and "not found" in line for line in message)
    assert "Offline" in err and "--service" in err
    # Neither was retried: errors that can't heal are not.
    assert "attempts" not in err
