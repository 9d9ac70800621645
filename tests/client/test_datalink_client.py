"""The client and DataLink: records resolved to their datasets, SODA cutouts, typed errors."""

from __future__ import annotations

import io
import math
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from tests.linksky import FIELDS, LinkSky
from tests.servers import LocalServer
from voharvest import (
    ClientConfig,
    Cutout,
    DataLinkError,
    FormatError,
    HostPolicy,
    ParameterError,
    QueryError,
    RetryPolicy,
    VOClient,
)

M51 = FIELDS["m51_r"]


def config() -> ClientConfig:
    return ClientConfig(
        retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.05, jitter=0.0),
        host=HostPolicy(rate=math.inf, concurrency=8),
    )


async def search(client: VOClient, sky: LinkSky, ra: float = M51[0], dec: float = M51[1]):
    service = client.sia_service(sky.url("/sia2"), version=2)
    return await service.search(pos=(ra, dec, 0.05))


async def m51(client: VOClient, sky: LinkSky, name: str = "m51_r"):
    """The record of one of the M51 fields."""
    return next(r for r in await search(client, sky) if name in (r.title or ""))


def contains(path: Path, ra: float, dec: float) -> bool:
    with fits.open(path) as hdus:
        header = hdus[0].header
        ny, nx = hdus[0].data.shape
    x, y = WCS(header).world_to_pixel(SkyCoord(ra, dec, unit="deg"))
    return bool(-0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".json", ".xml")))


async def test_a_datalink_record_downloads_the_dataset_not_the_links(
    server: LocalServer, tmp_path: Path
):
    sky = LinkSky(server)
    async with VOClient(config()) as client:
        record = await m51(client, sky)
        assert record.is_datalink and record.links is None
        path = await client.download(record, tmp_path)
        links = record.links
    assert path.read_bytes()[:9] == b"SIMPLE  ="
    assert path.stat().st_size == sky.full_size("m51_r")
    assert contains(path, *M51)
    assert sky.fetches["/dl"] == 1 and sky.fetches["m51_r.fits"] == 1
    # The document stays with the record: previews and progenitors at hand.
    assert links is not None
    assert [lk.access_url for lk in links.previews] == [sky.url("/files/m51_r.png")]
    assert [lk.access_url for lk in links.progenitors] == [sky.url("/raw/m51_r.fits")]
    assert leftovers(tmp_path) == []


async def test_a_cutout_is_smaller_and_holds_the_target(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server)
    target = (M51[0] + 0.01, M51[1] - 0.005)
    async with VOClient(config()) as client:
        record = await m51(client, sky)
        path = await client.download(record, tmp_path, cutout="1arcmin", position=target)
        planned = await client.datasets(record, cutout=Cutout.circle(1 * u.arcmin), position=target)
    assert contains(path, *target)
    assert path.stat().st_size < sky.full_size("m51_r") / 4
    assert sky.fetches["m51_r.fits"] == 0
    sent = sky.cutouts[0]
    assert sent["ID"] == sky.did("m51_r")
    ra, dec, radius = (float(x) for x in sent["CIRCLE"].split())
    assert (ra, dec) == pytest.approx(target) and radius == pytest.approx(1 / 60)
    assert [d.mode for d in planned] == ["cutout"]
    assert planned[0].region is not None and planned[0].region.startswith("CIRCLE ")
    assert planned[0].via == sky.url("/dl?ID=" + quote(sky.did("m51_r"), safe=""))


async def test_a_box_cutout_goes_as_a_polygon(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server)
    async with VOClient(config()) as client:
        record = await m51(client, sky, "m51_g")
        path = await client.download(record, tmp_path, cutout="2arcmin x 2arcmin")
    assert "POLYGON" in sky.cutouts[0] and "CIRCLE" not in sky.cutouts[0]
    assert contains(path, *M51)


async def test_a_url_that_answers_with_links_is_followed(server: LocalServer, tmp_path: Path):
    """Found by what comes back: a plain URL whose answer is a DataLink document."""
    sky = LinkSky(server)
    url = sky.url("/dl?ID=" + quote(sky.did("m101_r"), safe=""))
    async with VOClient(config()) as client:
        path = await client.download(url, tmp_path, expected_format="image/fits")
    assert path.read_bytes() == (await _fetch_direct(server, "/files/m101_r.fits"))
    assert leftovers(tmp_path) == []


async def _fetch_direct(server: LocalServer, path: str) -> bytes:
    async with VOClient(config()) as client:
        return await client.fetch(server.url(path))


async def test_an_error_row_is_a_typed_error_and_leaves_nothing(
    server: LocalServer, tmp_path: Path
):
    sky = LinkSky(server)
    url = sky.url("/dl?ID=" + quote("ivo://linksky.test/images?nothing", safe=""))
    async with VOClient(config()) as client:
        with pytest.raises(DataLinkError, match="NotFoundFault") as caught:
            await client.download(url, tmp_path)
    assert caught.value.dataset_id == "ivo://linksky.test/images?nothing"
    assert list(tmp_path.iterdir()) == []


async def test_several_datasets_need_a_choice(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server, two_this=True)
    async with VOClient(config()) as client:
        record = await m51(client, sky)
        with pytest.raises(ParameterError, match="2 files"):
            await client.download(record, tmp_path)
        both = await client.download_all(record, tmp_path / "all")
        fits_only = await client.download(record, tmp_path / "one", expected_format="image/fits")
    assert sorted(p.suffix for p in both) == [".fits", ".jpg"]
    assert fits_only.read_bytes()[:9] == b"SIMPLE  ="


async def test_rows_pointing_at_files_find_links_through_the_descriptor(
    server: LocalServer, tmp_path: Path
):
    sky = LinkSky(server, descriptor=True)
    async with VOClient(config()) as client:
        record = await m51(client, sky)
        assert not record.is_datalink
        link = urlsplit(record.datalink_url or "")
        assert link.path == "/dl" and parse_qs(link.query) == {"ID": [sky.did("m51_r")]}
        plain = await client.download(record, tmp_path / "plain")
        cut = await client.download(record, tmp_path / "cut", cutout=0.01)
    assert plain.stat().st_size == sky.full_size("m51_r")
    assert cut.stat().st_size < plain.stat().st_size / 4
    assert sky.fetches["/dl"] == 1  # only the cutout needed the document


async def test_no_soda_service_means_no_cutout(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server, soda=False)
    async with VOClient(config()) as client:
        record = await m51(client, sky)
        with pytest.raises(DataLinkError, match="no SODA service"):
            await client.download(record, tmp_path, cutout="1arcmin")
        full = await client.datasets(record, cutout="1arcmin", fallback="full")
        skipped = await client.datasets(record, cutout="1arcmin", fallback="skip")
    assert [d.mode for d in full] == ["full"] and skipped == []
    assert sky.fetches["m51_r.fits"] == 0


async def test_links_pointing_at_links_are_refused(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server, links_again=True)
    async with VOClient(config()) as client:
        record = await m51(client, sky)
        with pytest.raises(FormatError, match="another DataLink"):
            await client.download(record, tmp_path)
    assert leftovers(tmp_path) == []


async def test_a_soda_error_is_an_http_error_not_a_file(server: LocalServer, tmp_path: Path):
    sky = LinkSky(server)
    async with VOClient(config()) as client:
        record = await m51(client, sky)
        # Far away from the image: the service can't cut there.
        with pytest.raises(Exception) as caught:
            await client.download(record, tmp_path, cutout="1arcmin", position=(10.0, -40.0))
    from voharvest import HTTPStatusError

    assert isinstance(caught.value, HTTPStatusError) and caught.value.status == 422
    assert list(tmp_path.iterdir()) == []


async def test_a_links_document_error_answer_is_a_query_error(server: LocalServer, tmp_path: Path):
    async def failing(request):
        from aiohttp import web

        body = (
            b'<VOTABLE version="1.3"><RESOURCE type="results">'
            b'<INFO name="QUERY_STATUS" value="ERROR">UsageFault: ID missing</INFO>'
            b"</RESOURCE></VOTABLE>"
        )
        return web.Response(status=400, body=body, content_type="application/x-votable+xml")

    server.route("GET", "/broken-dl", failing)
    async with VOClient(config()) as client:
        with pytest.raises(QueryError, match="ID missing") as caught:
            await client.datalinks(server.url("/broken-dl"))
    assert caught.value.status == 400


def test_fits_of_the_sky_is_what_it_says() -> None:
    """The test service's images hold their field's centre (the oracle the tests lean on)."""
    from tests.linksky import field_fits

    with fits.open(io.BytesIO(field_fits("m101_r"))) as hdus:
        x, y = WCS(hdus[0].header).world_to_pixel(SkyCoord(*FIELDS["m101_r"], unit="deg"))
    assert x == pytest.approx(119.5, abs=0.01) and y == pytest.approx(119.5, abs=0.01)
