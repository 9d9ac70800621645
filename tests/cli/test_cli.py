"""The command line, run as users run it: a subprocess against a local SIA service.

Where a test is about what a command does rather than how its process exits,
``main()`` runs in this process (tests/cli/inprocess.py). Each exit code is still
seen from a real subprocess: here (0 of a harvest, 1 of a status, 2 of a usage
error) and in tests/testing/test_embedded.py (1 of a harvest with a failure).
"""

from __future__ import annotations

import asyncio
import csv
import sys
from pathlib import Path

import pytest
from aiohttp import web
from astropy.io.votable import parse_single_table

from tests.cli.inprocess import voharvest_here
from tests.harvest.minisky import MiniSky
from tests.recorded import pyvo_data
from tests.servers import LocalServer

FAST = ["--no-rate-limit", "--attempts", "2", "--read-timeout", "5"]


async def voharvest(*args: str | Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voharvest",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_harvest_status_and_manifest(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    sky = MiniSky(server, per_search=2)
    out = tmp_path / "out"
    code, _, err = await voharvest(
        "harvest",
        "--service",
        server.url("/sia"),
        "--target",
        "10 20",
        "--target",
        "11 21",
        "--size",
        "0.2",
        "--format",
        "image/fits",
        "--out",
        out,
        *FAST,
    )
    assert code == 0, err
    assert "requests" in err and "127.0.0.1" in err  # the per-host summary
    assert len(sky.completed) == 4
    with (out / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["state"] for r in rows} == {"done"}
    for row in rows:
        assert (out / row["path"]).stat().st_size == int(row["bytes"])
    table = parse_single_table(out / "manifest.xml").to_table()
    assert len(table) == 4 and set(table["format"]) == {"image/fits"}

    code, text, _ = await voharvest_here(capsys, "status", out)
    assert code == 0 and "complete" in text and "4 done" in text


async def test_failures_exit_1_and_a_rerun_finishes(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    sky = MiniSky(server, per_search=2)
    sky.broken.add("10.0000_20.0000_1.fits")
    out = tmp_path / "out"
    args = [
        "harvest",
        "--service",
        server.url("/sia"),
        "--target",
        "10 20",
        "--size",
        "0.2",
        "--format",
        "image/fits",
        "--out",
        out,
        *FAST,
    ]
    # In this process: a harvest subprocess exits 1 in tests/testing/test_embedded.py.
    code, _, err = await voharvest_here(capsys, *args)
    assert code == 1
    assert "failed download" in err
    code, text, _ = await voharvest_here(capsys, "status", out)
    assert code == 1 and "incomplete" in text
    sky.broken.clear()
    searches = len(server.hits_for("/sia"))
    code, _, err = await voharvest_here(capsys, *args)
    assert code == 0, err
    assert len(server.hits_for("/sia")) == searches
    assert sky.completed["10.0000_20.0000_1.fits"] == 1
    assert sky.completed["10.0000_20.0000_0.fits"] == 1


@pytest.mark.parametrize(
    "args",
    [
        ["harvest", "--service", "http://127.0.0.1:9/sia", "--size", "0.1", "--out", "x"],
        ["harvest", "--target", "M51", "--size", "0.1", "--out", "x"],
        ["harvest", "--target", "M51", "--waveband", "visible", "--size", "0.1", "--out", "x"],
        ["adql", "--waveband", "visible"],
        ["search", "http://h/sia", "--pos", "10 95", "--size", "0.1"],
        ["status"],
    ],
)
async def test_usage_errors_exit_2(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, _, err = await voharvest_here(capsys, *args)
    assert code == 2
    assert "error" in err


@pytest.mark.parametrize(
    "args",
    [
        ["harvest", "--service", "http://127.0.0.1:9/sia", "--size", "0.1", "--out", "x"],
        ["search", "http://h/sia", "--pos", "10 95", "--size", "0.1"],
    ],
)
async def test_usage_errors_exit_2_from_the_process(args: list[str], tmp_path: Path):
    """As the shell sees them: argparse's refusal, and one of ours (a declination past 90)."""
    code, _, err = await voharvest(*args)
    assert code == 2
    assert "error" in err


async def test_status_of_a_directory_without_a_harvest_fails(tmp_path: Path):
    code, _, err = await voharvest("status", tmp_path)
    assert code == 1 and "no harvest journal" in err


async def test_search_lists_records(server: LocalServer, capsys: pytest.CaptureFixture[str]):
    MiniSky(server, per_search=3)
    code, text, err = await voharvest_here(
        capsys, "search", server.url("/sia"), "--pos", "10 20", "--size", "0.2", *FAST
    )
    assert code == 0, err
    lines = text.strip().splitlines()
    assert len(lines) == 4  # three FITS and a preview
    assert lines[0].startswith(server.url("/img/")) and "\timage/fits\t" in lines[0]


async def test_registry_lists_resources(server: LocalServer, capsys: pytest.CaptureFixture[str]):
    recorded = pyvo_data("pyvo.registry.tests", "regtap.xml")

    async def tap(request: web.Request) -> web.Response:
        form = await request.post()
        assert "ivo_hashlist_has(waveband, 'radio')" in str(form["QUERY"])
        return web.Response(body=recorded, content_type="text/xml")

    server.route("POST", "/tap/sync", tap)
    code, text, err = await voharvest_here(
        capsys, "registry", "--waveband", "radio", "--registry", server.url("/tap"), *FAST
    )
    assert code == 0, err
    assert "ivo://cds.vizier/j/a+a/492/923" in text
    assert "30 resources" in err


async def test_preview_draws_a_contact_sheet(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    MiniSky(server, per_search=1)
    out = tmp_path / "out"
    code, _, err = await voharvest_here(
        capsys,
        "harvest",
        "--service",
        server.url("/sia"),
        "--target",
        "10 20",
        "--target",
        "30 40",
        "--size",
        "0.2",
        "--format",
        "image/fits",
        "--out",
        out,
        *FAST,
    )
    assert code == 0, err
    # The mini sky's FITS are headers only; give one real pixels to draw.
    import numpy as np
    from astropy.io import fits

    first = next(out.rglob("*.fits"))
    fits.PrimaryHDU(np.arange(400.0).reshape(20, 20)).writeto(first, overwrite=True)
    sheet = tmp_path / "sheet.png"
    code, _, err = await voharvest_here(capsys, "preview", out, "-o", sheet)
    assert code == 0, err
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 images" in err


async def test_harvest_cutouts_from_the_command_line(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from tests.linksky import FIELDS, LinkSky

    sky = LinkSky(server)
    out = tmp_path / "out"
    ra, dec = FIELDS["m101_r"]
    args = ["harvest", "--sia2", server.url("/sia2"), "--target", f"{ra} {dec}",
            "--size", "0.1", "--format", "image/fits", "--cutout", "1arcmin", "--out", out,
            "--no-progress", *FAST]  # fmt: skip
    code, _, err = await voharvest_here(capsys, *args)
    assert code == 0, err
    with (out / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["state"], r["mode"]) for r in rows] == [("done", "cutout")]
    assert rows[0]["region"].startswith(f"CIRCLE {ra} {dec} ")
    assert (out / rows[0]["path"]).stat().st_size < sky.full_size("m101_r") / 4
    # Other cutout options on the same --out: refused, exit 2.
    changed = [a if a != "1arcmin" else "2arcmin" for a in args]
    code, _, err = await voharvest_here(capsys, *changed)
    assert code == 2 and "other options" in err
    code, _, err = await voharvest_here(
        capsys, *args[: -len(FAST) - 3], "--cutout", "3 m", "--out", tmp_path / "x"
    )
    assert code == 2 and "not an angle" in err
