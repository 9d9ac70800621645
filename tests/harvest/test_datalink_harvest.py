"""Harvests of DataLink services: datasets and cutouts, journaled, resumable, in the manifest."""

from __future__ import annotations

import csv
import math
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from tests.linksky import FIELDS, LinkSky
from tests.servers import LocalServer
from voharvest import ClientConfig, DataLinkError, HostPolicy, RetryPolicy, VOClient
from voharvest.harvesting import harvest
from voharvest.harvesting._journal import JOURNAL_NAME
from voharvest.harvesting.manifest import status, write_manifest

M51 = FIELDS["m51_r"]
M101 = FIELDS["m101_r"]


def config() -> ClientConfig:
    return ClientConfig(
        retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.05, jitter=0.0),
        host=HostPolicy(rate=math.inf, concurrency=8),
    )


async def run(sky: LinkSky, out: Path, targets, **options):
    async with VOClient(config()) as client:
        service = client.sia_service(sky.url("/sia2"), version=2)
        return [
            item
            async for item in harvest(
                client, [service], targets, size=0.1, download_to=out, **options
            )
        ]


def saved(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and p.parent != out)


def manifest(out: Path) -> list[dict[str, str]]:
    csv_path, _ = write_manifest(out)
    with csv_path.open() as handle:
        return list(csv.DictReader(handle))


def holds(path: Path, ra: float, dec: float) -> bool:
    with fits.open(path) as hdus:
        ny, nx = hdus[0].data.shape
        x, y = WCS(hdus[0].header).world_to_pixel(SkyCoord(ra, dec, unit="deg"))
    return bool(-0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5)


async def test_datalink_records_end_as_fits_files(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server)
    items = await run(sky, tmp_path, [M51, M101], search_format="image/fits")
    assert [i for i in items if not i.ok] == []
    files = saved(tmp_path)
    assert len(files) == 3
    for path in files:
        assert path.suffix == ".fits" and path.read_bytes()[:9] == b"SIMPLE  ="
    assert {sky.fetches[f"{n}.fits"] for n in FIELDS} == {1}
    rows = manifest(tmp_path)
    assert len(rows) == 3
    for row in rows:
        assert row["state"] == "done" and row["mode"] == "full" and row["region"] == ""
        assert row["via"].startswith(sky.url("/dl?ID="))
        assert row["preview"].endswith(".png")
        assert row["url"].endswith(".fits")
    # The SIA v2 search asked for FITS and for DataLink rows (they may lead to FITS).
    formats = [h.query for h in server.hits_for("/sia2")]
    assert formats and all("FORMAT" in q for q in formats)
    # Again: nothing fetched twice, no links document asked for again.
    before = (sky.fetches["/dl"], sum(sky.fetches[f"{n}.fits"] for n in FIELDS))
    again = await run(sky, tmp_path, [M51, M101], search_format="image/fits")
    assert [i for i in again if not i.ok] == []
    assert (sky.fetches["/dl"], sum(sky.fetches[f"{n}.fits"] for n in FIELDS)) == before


async def test_cutouts_hold_their_target_and_are_smaller(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server)
    near_m51 = (M51[0] + 0.02, M51[1] + 0.01)
    items = await run(sky, tmp_path, [near_m51, M101], cutout="1arcmin")
    assert [i for i in items if not i.ok] == []
    files = saved(tmp_path)
    assert len(files) == 3 and all("_cutout" in p.name for p in files)
    for path in files:
        centre = M101 if "m101" in str(path).lower() else near_m51
        assert holds(path, *centre)
        assert path.stat().st_size < sky.full_size("m51_r") / 4
    assert sum(sky.fetches[f"{n}.fits"] for n in FIELDS) == 0
    rows = manifest(tmp_path)
    assert {row["mode"] for row in rows} == {"cutout"}
    for row in rows:
        shape, ra, dec, radius = row["region"].split()
        assert shape == "CIRCLE" and float(radius) == pytest.approx(1 / 60)
        centre = M101 if "m101" in row["path"].lower() else near_m51
        assert (float(ra), float(dec)) == pytest.approx(centre)
        assert int(row["bytes"]) == Path(tmp_path / row["path"]).stat().st_size


async def test_the_same_dataset_cut_for_two_targets_gives_two_cutouts(
    server: LocalServer, tmp_path: Path
):
    sky = LinkSky(server)
    first, second = (M51[0] - 0.01, M51[1]), (M51[0] + 0.01, M51[1])
    full = await run(sky, tmp_path / "full", [first, second])
    assert [i for i in full if not i.ok] == []
    # Full frames: two targets see the same two datasets; each is fetched once.
    assert len(saved(tmp_path / "full")) == 2 and len(manifest(tmp_path / "full")) == 4
    cut = await run(sky, tmp_path / "cut", [first, second], cutout="0.5arcmin")
    assert [i for i in cut if not i.ok] == []
    # Cutouts: one per dataset and target.
    assert len(saved(tmp_path / "cut")) == 4
    centres = sorted({tuple(map(float, c["CIRCLE"].split()[:2])) for c in sky.cutouts})
    assert len(centres) == 2
    for centre, target in zip(centres, sorted([first, second]), strict=True):
        assert centre == pytest.approx(target)


async def test_without_soda_the_fallback_decides(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server, soda=False)
    skipped = await run(sky, tmp_path / "skip", [M51], cutout="1arcmin", cutout_fallback="skip")
    assert [i for i in skipped if not i.ok] == [] and saved(tmp_path / "skip") == []
    assert sum(i.nothing_to_cut for i in skipped) == 2
    summary = status(tmp_path / "skip")
    assert summary.total.records_skipped == 2 and summary.complete
    full = await run(sky, tmp_path / "full", [M51], cutout="1arcmin", cutout_fallback="full")
    assert [i for i in full if not i.ok] == []
    assert len(saved(tmp_path / "full")) == 2
    assert {row["mode"] for row in manifest(tmp_path / "full")} == {"full"}


async def test_an_error_row_fails_that_record_only(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server)
    original = sky.did

    def wrong(name: str) -> str:  # the search names a dataset the links service won't know
        return original(name) + ("-gone" if name == "m51_g" else "")

    sky.did = wrong  # type: ignore[method-assign]
    items = await run(sky, tmp_path, [M51])
    failures = [i for i in items if not i.ok]
    assert len(failures) == 1 and isinstance(failures[0].error, DataLinkError)
    assert "NotFoundFault" in str(failures[0].error)
    assert len(saved(tmp_path)) == 1
    summary = status(tmp_path)
    assert summary.total.records_failed == 1 and not summary.complete
    states = sorted((row["state"], row["mode"]) for row in manifest(tmp_path))
    assert states == [("done", "full"), ("failed", "full")]


async def test_a_failed_dataset_is_retried_without_asking_for_its_links_again(
    server: LocalServer, tmp_path: Path
):
    sky = LinkSky(server)
    broken = {"on": True}
    original = sky.file

    async def flaky(request: web.Request) -> web.StreamResponse:
        if broken["on"] and request.path.endswith("m51_g.fits"):
            return web.Response(status=404, text="gone for now")
        return await original(request)

    server.route("GET", "/files/*", flaky)
    first = await run(sky, tmp_path, [M51])
    assert len([i for i in first if not i.ok]) == 1
    links_asked = sky.fetches["/dl"]
    broken["on"] = False
    second = await run(sky, tmp_path, [M51])
    assert [i for i in second if not i.ok] == []
    assert sky.fetches["/dl"] == links_asked
    assert len(saved(tmp_path)) == 2 and status(tmp_path).complete


async def test_a_journal_of_an_older_version_gains_the_new_columns(tmp_path: Path):
    from voharvest.harvesting._journal import Journal

    old = sqlite3.connect(tmp_path / JOURNAL_NAME)
    old.executescript(
        "CREATE TABLE records (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE,"
        " path TEXT NOT NULL, service TEXT NOT NULL, target TEXT NOT NULL, target_label TEXT,"
        " title TEXT, format TEXT, announced_size INTEGER, ra REAL, dec REAL,"
        " state TEXT NOT NULL, bytes INTEGER, error TEXT, updated REAL NOT NULL);"
        "INSERT INTO records (url, path, service, target, state, updated)"
        " VALUES ('http://x/a.fits', 's/t/a.fits', 'sia1 http://x', 't', 'pending', 0);"
    )
    old.commit()
    old.close()
    journal = Journal(tmp_path)
    await journal.open({"size": 0.1})
    try:
        rows = await journal.unfinished(0, 10, 10)
    finally:
        await journal.close()
    assert [(r.url, r.kind) for r in rows] == [("http://x/a.fits", "file")]
    columns = {row[1] for row in sqlite3.connect(tmp_path / JOURNAL_NAME).execute(
        "PRAGMA table_info(records)")}  # fmt: skip
    assert {"kind", "parent", "via", "mode", "region", "preview"} <= columns


async def test_links_found_by_what_comes_back_are_followed(server: LocalServer, tmp_path: Path):
    """Rows that say image/fits but whose URL answers with a DataLink document."""
    sky = LinkSky(server, unlabelled=True)
    items = await run(sky, tmp_path, [M101], search_format="image/fits")
    assert [i for i in items if not i.ok] == []
    (path,) = saved(tmp_path)
    assert path.read_bytes()[:9] == b"SIMPLE  =" and path.stat().st_size == sky.full_size("m101_r")
    assert sky.fetches["/dl"] == 1 and sky.fetches["m101_r.fits"] == 1


async def test_an_sia1_cutout_service_is_searched_at_the_cutout_size(
    server: LocalServer, tmp_path: Path
):
    """SIA 1.0 services of the Cutout type cut their images to the search."""
    from tests.harvest.minisky import MiniSky

    MiniSky(server, per_search=1)
    target = (30.0, 40.0)
    async with VOClient(config()) as client:
        cutting = client.sia_service(server.url("/sia"), cuts=True)
        items = [
            item
            async for item in harvest(
                client,
                [cutting],
                [target],
                size=0.5,
                search_format="image/fits",
                download_to=tmp_path,
                cutout="1arcmin",
            )
        ]
        plain = [
            item
            async for item in harvest(
                client, [server.url("/sia")], [target], size=0.5, search_format="image/fits",
                download_to=tmp_path / "p", cutout="1arcmin", cutout_fallback="skip",
            )
        ]  # fmt: skip
    assert [i for i in items if not i.ok] == []
    sizes = [hit.query["SIZE"] for hit in server.hits_for("/sia")]
    assert float(sizes[0]) == pytest.approx(2 / 60)  # the cutout's diameter, not 0.5
    assert float(sizes[1]) == pytest.approx(0.5)  # an ordinary service: the search size
    (row,) = manifest(tmp_path)
    assert row["mode"] == "cutout" and row["state"] == "done"
    shape, ra, dec, width, height = row["region"].split()
    assert shape == "BOX" and (float(ra), float(dec)) == pytest.approx(target)
    assert (float(width), float(height)) == pytest.approx((2 / 60, 2 / 60))
    # An ordinary SIA 1.0 service without DataLink can't cut: skipped at the search.
    assert [i for i in plain if i.kind == "download"] == []
