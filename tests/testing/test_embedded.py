"""The embedded sky answered through the real client, and the README's example run on it."""

from __future__ import annotations

import asyncio
import io
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from tests.cli.inprocess import voharvest_here
from voharvest import VOClient
from voharvest._config import ClientConfig
from voharvest._exceptions import NameResolutionError, VOHarvestError
from voharvest.testing import GALAXIES, EmbeddedSky

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def sky() -> AsyncIterator[EmbeddedSky]:
    async with EmbeddedSky() as embedded:
        yield embedded


async def test_the_registry_finds_the_notebooks_services(sky: EmbeddedSky):
    async with VOClient(sky.client_config()) as client:
        uv = await client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])
        sloan = await client.regsearch(servicetype="sia", waveband="optical", keywords=["sloan"])
        sia2 = await client.regsearch(servicetype="sia2")
        tap = await client.regsearch(servicetype="tap")
        nothing = await client.regsearch(servicetype="sia", waveband="x-ray")
    assert [r.short_name for r in uv] == ["SwiftUVOT"]
    assert [r.short_name for r in sloan] == ["SDSSDR7", "SDSSDR7"]
    urls = [r.access_url("sia") for r in sloan]
    hosts = {url.split("/")[2] for url in urls}
    assert len(hosts) == 2  # two hosts
    assert sum("FORMAT=image/fits" in url for url in urls) == 1  # one with the preset
    assert [r.ivoid for r in sia2] == ["ivo://embedded.sky/siap2/sitewide"]
    assert [r.access_url("tap") for r in tap] == [sky.registry_url]
    assert nothing == []


async def test_the_name_resolver_knows_the_catalogue(sky: EmbeddedSky):
    async with VOClient(sky.client_config()) as client:
        for galaxy in GALAXIES[:6]:
            position = await client.resolve(galaxy.name)
            assert position.ra.deg == pytest.approx(galaxy.ra)
            assert position.dec.deg == pytest.approx(galaxy.dec)
        alias = await client.resolve("ngc 5194")
        assert alias.ra.deg == pytest.approx(202.469575)
        with pytest.raises(NameResolutionError):
            await client.resolve("NoSuchGalaxy")


async def test_the_preset_service_refuses_other_formats(sky: EmbeddedSky):
    async with VOClient(sky.client_config()) as client:
        preset = client.sia_service(sky.access_url("sdss-b"))
        found = await preset.search((202.47, 47.2), 0.05)
        assert {r.format for r in found} == {"image/fits"}
        other = client.sia_service(sky.access_url("sdss-b").replace("FORMAT=image/fits&", ""))
        with pytest.raises(VOHarvestError, match="not supported"):
            await other.search((202.47, 47.2), 0.05, format="ALL")


async def test_sia2_rows_lead_through_datalink_to_fits_and_soda_cutouts(
    sky: EmbeddedSky, tmp_path: Path
):
    async with VOClient(sky.client_config()) as client:
        sitewide = client.sia_service(sky.access_url("sitewide"), version=2)
        found = await sitewide.search(pos=("M87", 0.05))
        record = next(iter(found))
        assert record.format == "application/x-votable+xml;content=datalink"
        full = await client.download(record, tmp_path / "full")
        cut = await client.download(record, tmp_path / "cut", cutout="2arcmin", position="M87")
    with fits.open(full) as hdus:
        whole = hdus[0].data.shape
    with fits.open(cut) as hdus:
        data, wcs = hdus[0].data, WCS(hdus[0].header)
    assert data.shape[0] < whole[0] / 2
    # The cutout is centred on M87 and its nucleus is its brightest pixel.
    m87 = next(g for g in GALAXIES if g.name == "M87")
    x, y = wcs.world_to_pixel_values(m87.ra, m87.dec)
    py, px = np.unravel_index(int(np.argmax(data)), data.shape)
    assert abs(px - x) <= 1 and abs(py - y) <= 1


async def test_a_default_config_follows_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VOHARVEST_REGISTRY", "http://127.0.0.1:9/tap, http://127.0.0.1:10/tap")
    monkeypatch.setenv("VOHARVEST_SESAME", "http://127.0.0.1:9/sesame")
    config = ClientConfig()
    assert [r.url for r in config.registries] == [
        "http://127.0.0.1:9/tap",
        "http://127.0.0.1:10/tap",
    ]
    assert config.sesame == ("http://127.0.0.1:9/sesame",)
    monkeypatch.delenv("VOHARVEST_REGISTRY")
    monkeypatch.delenv("VOHARVEST_SESAME")
    assert "reg.g-vo.org" in ClientConfig().registries[0].url


def _readme_python() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## In Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's 'In Python' section has no python block"
    return match.group(1)


@pytest.mark.slow
async def test_the_readme_python_example_runs_unchanged_on_the_embedded_sky(
    sky: EmbeddedSky, tmp_path: Path
):
    script = tmp_path / "example.py"
    script.write_text(_readme_python())
    import os

    import voharvest

    # The same voharvest as this test's (the example runs from another directory).
    source = str(Path(voharvest.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **sky.environ(), "PYTHONPATH": path}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert out.strip(), "the example printed nothing"
    assert b"Traceback" not in err
    # It went to the embedded sky (nowhere else could answer here) and wrote what it says.
    assert sky.requests["registry"] >= 1
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != script]
    assert written


def test_the_progress_shows_a_total_and_a_share():
    from voharvest.cli._progress import Progress
    from voharvest.harvesting import HarvestItem

    stream = io.StringIO()
    progress = Progress(stream=stream, bars=False, searches_total=4)
    for target in ("a", "b"):
        progress.update(HarvestItem("search", "S", target, records=1), 0)
    progress.line(0)
    assert "searches 2 ok of 4 (33%" in stream.getvalue()  # 2 of 4 searches + 2 files to come
    bars = io.StringIO()
    progress = Progress(stream=bars, bars=True, searches_total=4)
    progress.update(HarvestItem("search", "S", "a", records=1), 0)
    progress.close(0)
    assert "1/4" in bars.getvalue() and "25%" in bars.getvalue()


def test_hosts_sort_as_addresses():
    from voharvest._limiter import HostStats
    from voharvest.cli._progress import host_summary, origin_sort_key

    origins = ["http://127.0.0.10:80", "http://example.org:80", "http://127.0.0.2:80"]
    assert sorted(origins, key=origin_sort_key) == [
        "http://127.0.0.2:80",
        "http://127.0.0.10:80",
        "http://example.org:80",
    ]
    table = host_summary({origin: HostStats() for origin in origins})
    lines = table.splitlines()
    assert lines[1].startswith("http://127.0.0.2:") and lines[2].startswith("http://127.0.0.10:")


@pytest.mark.slow
async def test_status_lists_failures_with_their_service(
    sky: EmbeddedSky, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    args = ["harvest", "--target", "M51", "--target", "NoSuchGalaxy", "--service",
            sky.access_url("sdss-a"), "--sesame", sky.sesame_url, "--size", "0.05",
            "--format", "image/fits", "--max-records", "1", "--out", str(out),
            "--no-progress"]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voharvest", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1
    assert "failed search" in err.decode()
    # The status: main() in this process (the harvest above was the real process).
    _, text, _ = await voharvest_here(capsys, "status", out)
    failed = [line for line in text.splitlines() if "failed search" in line]
    assert failed == [
        f"  failed search NoSuchGalaxy (sia1 {sky.access_url('sdss-a')}): "
        f"Sesame doesn't know 'NoSuchGalaxy' (from {sky.sesame_url}?NoSuchGalaxy)"
    ]
