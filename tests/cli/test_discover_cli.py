"""``voharvest discover`` on the little local VO of tests/client/test_discover.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.client.test_discover import LittleVO
from tests.servers import LocalServer
from voharvest.cli import main


async def test_discover_lists_each_image_once_and_resumes(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    LittleVO(server, batches=True)
    journal = tmp_path / "d.sqlite"
    argv = [
        "discover",
        "--registry", server.url("/reg/tap"),
        "--target", "10 10 first",
        "--target", "10.5,10",
        "--target", "200 -30",
        "--size", "6arcmin",
        "--attempts", "1",
        "--journal", str(journal),
    ]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 0
    out, err = capsys.readouterr()
    lines = [line.split("\t") for line in out.splitlines()]
    assert len(lines) == 6
    first = next(line for line in lines if line[0] == "http://data.test/10_10.fits")
    assert first[1:] == ["image/fits", "first", "ivo://x/obscore#obscore,ivo://x/sia2#sia2"]
    assert "skipped  sia     ivo://x/north" not in err
    assert err.splitlines()[-1] == "6 datasets from 3 targets; 10 requests"
    hits = len(server.hits)
    assert await asyncio.to_thread(main, argv) == 0
    out_again, err_again = capsys.readouterr()
    assert out_again == out
    assert len(server.hits) == hits
    assert err_again.splitlines()[-1] == (
        "6 datasets from 3 targets; 0 requests (10 answers from the journal)"
    )


def test_discover_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["discover", "--size", "1arcmin"]) == 2
    assert "give --target" in capsys.readouterr().err
    assert main(["discover", "--target", "M51", "--size", "1", "--band", "blue"]) == 2
    assert "not a wavelength" in capsys.readouterr().err
    assert main(["discover", "--target", "1 2", "--size", "1", "--keep", "image/fits"]) == 2
    assert "--keep needs --out" in capsys.readouterr().err
