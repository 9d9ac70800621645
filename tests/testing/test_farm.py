"""VOFarm: the simulated hosts answer what they claim, fail as they claim, and count it."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import dataclasses
import email.utils
import io
import itertools
import json
import subprocess
import sys
import time

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.votable import parse as parse_votable
from astropy.wcs import WCS
from pyvo.dal.exceptions import DALOverflowWarning
from pyvo.dal.sia import SIAResults as PyvoSIAResults
from pyvo.dal.sia2 import SIA2Results as PyvoSIA2Results

from voharvest import FormatError, OverflowWarning, ParameterError, QueryError
from voharvest.protocol import regtap, sia1, sia2, tap
from voharvest.protocol.votable import parse_registry, parse_sia
from voharvest.testing import (
    FAULT_KINDS,
    LAST_MODIFIED,
    HostConfig,
    VOFarm,
    _host,
    search_tiles,
    tile_of,
)
from voharvest.testing._sky import Sky, encode_jpeg

M51 = (202.4696, 47.1952)


@pytest.fixture
async def farm():
    async with VOFarm(hosts=2, seed=0) as running:
        yield running


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


async def get(session, url, **kwargs):
    async with session.get(url, **kwargs) as response:
        return response.status, response.headers, await response.read()


def sia1_url(host, **params):
    return sia1.build_url(host.sia1_url, pos=M51, size=0.3, **params)


# --- searches -------------------------------------------------------------------------


async def test_sia1_answer_parses_with_voharvest_and_pyvo(farm, session):
    host = farm.hosts[1]
    status, _, body = await get(session, sia1_url(host))
    assert status == 200
    results = parse_sia(body, url=host.sia1_url)
    assert results.version == 1
    tiles = search_tiles(*M51, 0.15, host.config.images_per_search)
    assert len(results) == len(tiles) * 2  # each tile in FITS and in JPEG
    assert all(url.startswith(host.base_url + "/images/") for url in results.getdataurls())
    assert {r.format for r in results} == {"image/fits", "image/jpeg"}
    first = results[0]
    assert first.filesize is not None and first.filesize > 0
    assert SkyCoord(first.ra, first.dec, unit="deg").separation(SkyCoord(*M51, unit="deg")) < (
        0.3 * u.deg
    )
    oracle = PyvoSIAResults(parse_votable(io.BytesIO(body)))
    assert len(oracle) == len(results)
    assert [record.getdataurl() for record in oracle] == results.getdataurls()


@pytest.mark.parametrize(
    ("format", "expected"),
    [
        ("image/fits", {"image/fits"}),
        ("image/jpeg", {"image/jpeg"}),
        ("ALL", {"image/fits", "image/jpeg"}),
        ("GRAPHIC", {"image/jpeg"}),
        ("METADATA", set()),
        ("image/png", set()),
    ],
)
async def test_sia1_format_is_honoured(farm, session, format, expected):
    _, _, body = await get(session, sia1_url(farm.hosts[0], format=format))
    assert {record.format for record in parse_sia(body)} == expected


@pytest.mark.parametrize(
    "query", ["SIZE=0.2", "POS=abc,10&SIZE=0.2", "POS=10,95&SIZE=0.2", "POS=10&SIZE=0.1"]
)
async def test_sia1_bad_pos_is_a_query_error_with_status_200(farm, session, query):
    status, _, body = await get(session, farm.hosts[0].sia1_url + "?" + query)
    assert status == 200
    with pytest.raises(QueryError, match="POS"):
        parse_sia(body)


async def test_a_format_preset_host_refuses_format_all(session):
    config = HostConfig(sia1_format_preset="image/fits")
    async with VOFarm(hosts=1, config=config) as farm:
        host = farm.hosts[0]
        assert host.sia1_url.endswith("/sia?FORMAT=image/fits&")
        _, _, body = await get(session, sia1_url(host))
        assert {record.format for record in parse_sia(body)} == {"image/fits"}
        # A client that adds FORMAT=ALL to the preset, as pyvo does, gets an error.
        _, _, body = await get(session, host.sia1_url + "POS=10,10&SIZE=0.1&FORMAT=ALL")
        with pytest.raises(QueryError, match="FORMAT"):
            parse_sia(body)


async def test_sia2_answer_parses_with_voharvest_and_pyvo(farm, session):
    host = farm.hosts[0]
    url = sia2.build_url(host.sia2_url, pos=(*M51, 0.15))
    status, _, body = await get(session, url)
    assert status == 200
    results = parse_sia(body)
    assert results.version == 2
    assert len(results) == host.config.images_per_search * 2
    assert all(url.startswith(host.base_url + "/images/") for url in results.getdataurls())
    assert {r.dataproduct_type for r in results} == {"image"}
    assert all(r.calib_level == 2 and r.publisher_did for r in results)
    fits_record = next(r for r in results if r.format == "image/fits")
    assert fits_record.filesize == pytest.approx(host.config.image_bytes, rel=0.1)
    oracle = PyvoSIA2Results(parse_votable(io.BytesIO(body)))
    assert [record.getdataurl() for record in oracle] == results.getdataurls()


async def test_sia2_maxrec_truncates_with_a_trailing_overflow(farm, session):
    host = farm.hosts[0]
    url = sia2.build_url(host.sia2_url, pos=(*M51, 0.15), format="image/fits", maxrec=2)
    _, _, body = await get(session, url)
    assert body.rindex(b'value="OVERFLOW"') > body.rindex(b"</TABLE>")
    with pytest.warns(OverflowWarning):
        results = parse_sia(body)
    assert len(results) == 2 and results.overflow
    assert {record.format for record in results} == {"image/fits"}
    oracle = PyvoSIA2Results(parse_votable(io.BytesIO(body)))
    assert len(oracle) == 2
    with pytest.warns(DALOverflowWarning):
        oracle.check_overflow_warning()  # pyvo sees the OVERFLOW too


async def test_sia2_range_and_polygon_and_missing_pos(farm, session):
    host = farm.hosts[0]
    polygon = sia2.build_url(host.sia2_url, pos=[(202.3, 47.1), (202.6, 47.1), (202.5, 47.3)])
    for url in (f"{host.sia2_url}?POS=RANGE+202.3+202.6+47.1+47.3", polygon):
        results = parse_sia((await get(session, url))[2])
        assert len(results) >= 2
        centre = SkyCoord(202.45, 47.2, unit="deg")
        assert all(r.position.separation(centre) < 0.4 * u.deg for r in results)
    _, _, body = await get(session, host.sia2_url + "?FORMAT=image/fits")
    with pytest.raises(QueryError, match="POS"):
        parse_sia(body)


async def test_searches_are_deterministic(session):
    answers = []
    for _ in range(2):
        async with VOFarm(hosts=1, seed=7) as farm:
            _, _, body = await get(session, sia1_url(farm.hosts[0]))
            port = str(farm.hosts[0].port).encode()
            answers.append(body.replace(port, b"PORT"))
    assert answers[0] == answers[1]


def test_tiles_are_found_near_the_position_and_capped():
    for ra, dec in [M51, (0.01, 0.0), (359.99, -89.99), (180.0, 89.95)]:
        tiles = search_tiles(ra, dec, 0.0, 5)
        assert 1 <= len(tiles) <= 5
        near = SkyCoord(ra, dec, unit="deg").separation(
            SkyCoord(tiles[0].ra, tiles[0].dec, unit="deg")
        )
        assert near < 0.2 * u.deg
    assert len(search_tiles(*M51, 2.0, 7)) == 7
    assert search_tiles(*M51, 2.0, 7) == search_tiles(*M51, 2.0, 7)


# --- registry -------------------------------------------------------------------------


async def registry(session, farm, **constraints):
    query = regtap.build_query(**constraints)
    async with session.post(farm.registry_url + "/sync", data=tap.sync_fields(query)) as answer:
        assert answer.status == 200
        return parse_registry(await answer.read())


async def test_registry_lists_every_host_and_filters_by_servicetype(session):
    per_host = {2: HostConfig(waveband="uv", title="VOFarm Swift-like UV host")}
    async with VOFarm(hosts=3, per_host=per_host) as farm:
        resources = await registry(session, farm, servicetype="sia2")
        assert [r.ivoid for r in resources] == [h.ivoid for h in farm.hosts]
        for resource, host in zip(resources, farm.hosts, strict=True):
            assert resource.access_url("sia2") == host.sia2_url
            assert resource.service_kinds == ("sia2",)
            assert f"host {host.index}" in resource.title or "UV" in resource.title
        resources = await registry(session, farm, servicetype="sia")
        assert [r.access_url("sia") for r in resources] == [h.sia1_url for h in farm.hosts]
        assert all(r.service_kinds == ("sia",) for r in resources)
        everything = await registry(session, farm, keywords=["vofarm"])
        assert set(everything[0].service_kinds) == {"sia", "sia2", "tap"}
        uv = await registry(session, farm, servicetype="sia", waveband="uv", keywords=["swift"])
        assert [r.ivoid for r in uv] == [farm.hosts[2].ivoid]
        assert uv[0].wavebands == ("uv",)
        optical = await registry(session, farm, servicetype="sia", waveband="optical")
        assert len(optical) == 2
        assert len(await registry(session, farm, servicetype="ssa")) == 0
        assert len(await registry(session, farm, servicetype="sia2", maxrec=1)) == 1


async def test_registry_refuses_a_request_without_query(farm, session):
    async with session.post(farm.registry_url + "/sync", data={"REQUEST": "doQuery"}) as answer:
        assert answer.status == 400
        with pytest.raises(QueryError, match="QUERY"):
            parse_registry(await answer.read())


# --- images ---------------------------------------------------------------------------


@pytest.mark.parametrize("bitpix", [16, -32])
async def test_fits_has_a_wcs_centred_on_its_tile(session, bitpix):
    config = HostConfig(image_bytes=300_000, bitpix=bitpix)
    async with VOFarm(hosts=1, config=config) as farm:
        host = farm.hosts[0]
        _, _, body = await get(session, sia1_url(host, format="image/fits"))
        record = parse_sia(body)[0]
        status, headers, data = await get(session, record.getdataurl())
    assert status == 200 and headers["Content-Type"] == "image/fits"
    assert len(data) == record.filesize == int(headers["Content-Length"])
    assert abs(len(data) - 300_000) < 2 * 2880 + 1000
    with fits.open(io.BytesIO(data)) as hdus:
        header, pixels = hdus[0].header, hdus[0].data
        assert header["BITPIX"] == bitpix and header["OBJECT"].startswith("VOFarm tile")
        assert header["DATE-OBS"].startswith("20")
        assert pixels.shape == (header["NAXIS2"], header["NAXIS1"])
        assert np.all(np.isfinite(pixels)) and 500 < float(pixels.mean()) < 2000
        wcs = WCS(header)
    centre = wcs.pixel_to_world(header["CRPIX1"] - 1, header["CRPIX2"] - 1)
    tile = SkyCoord(record.ra, record.dec, unit="deg")
    assert centre.separation(tile) < 1e-6 * u.deg
    assert centre.separation(SkyCoord(*M51, unit="deg")) < 0.3 * u.deg
    containing = tile_of(*M51)
    assert wcs.footprint_contains(SkyCoord(containing.ra, containing.dec, unit="deg")) == (
        record.title == f"VOFarm tile {containing.id} (fits)"
    )


async def test_jpeg_is_a_valid_small_image(farm, session, tmp_path):
    host = farm.hosts[0]
    _, _, body = await get(session, sia1_url(host, format="image/jpeg"))
    record = parse_sia(body)[0]
    status, headers, data = await get(session, record.getdataurl())
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert data[:3] == b"\xff\xd8\xff" and data.endswith(b"\xff\xd9")
    assert len(data) == record.filesize
    sof = data.index(b"\xff\xc0")
    assert data[sof + 5 : sof + 9] == (64).to_bytes(2, "big") * 2  # height, width


def test_jpeg_encoder_output_decodes_with_libjpeg(tmp_path):
    name = ctypes.util.find_library("gdk_pixbuf-2.0")
    if name is None:
        pytest.skip("no gdk-pixbuf (libjpeg) on this system to decode with")
    y, x = np.mgrid[0:40, 0:56]
    pixels = (128 + 100 * np.sin(x / 7) * np.cos(y / 9)).astype(np.uint8)
    path = tmp_path / "smooth.jpg"
    path.write_bytes(encode_jpeg(pixels))
    lib = ctypes.CDLL(name)
    lib.gdk_pixbuf_new_from_file.restype = ctypes.c_void_p
    lib.gdk_pixbuf_new_from_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    for function in ("width", "height", "rowstride", "n_channels"):
        getattr(lib, f"gdk_pixbuf_get_{function}").argtypes = [ctypes.c_void_p]
    lib.gdk_pixbuf_get_pixels.restype = ctypes.POINTER(ctypes.c_ubyte)
    lib.gdk_pixbuf_get_pixels.argtypes = [ctypes.c_void_p]
    lib.g_object_unref.argtypes = [ctypes.c_void_p]
    pixbuf = lib.gdk_pixbuf_new_from_file(str(path).encode(), None)
    assert pixbuf, "libjpeg could not decode the JPEG"
    try:
        width, height = lib.gdk_pixbuf_get_width(pixbuf), lib.gdk_pixbuf_get_height(pixbuf)
        stride, channels = (
            lib.gdk_pixbuf_get_rowstride(pixbuf),
            lib.gdk_pixbuf_get_n_channels(pixbuf),
        )
        raw = np.ctypeslib.as_array(lib.gdk_pixbuf_get_pixels(pixbuf), shape=(height * stride,))
        decoded = np.array(
            [raw[r * stride : r * stride + width * channels : channels] for r in range(height)]
        )
    finally:
        lib.g_object_unref(pixbuf)
    assert (width, height) == (56, 40)
    assert np.abs(decoded.astype(int) - pixels).mean() < 3


async def image(farm, session, host=0, format="image/fits"):
    """URL and full bytes of one image of a host."""
    _, _, body = await get(session, sia1_url(farm.hosts[host], format=format))
    url = parse_sia(body)[0].getdataurl()
    _, headers, data = await get(session, url)
    return url, headers, data


async def test_range_and_if_range(farm, session):
    url, headers, full = await image(farm, session)
    etag, size = headers["ETag"], len(full)
    assert headers["Accept-Ranges"] == "bytes" and headers["Last-Modified"] == LAST_MODIFIED
    farm.reset_counters()
    status, got, body = await get(session, url, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == full[100:200]
    assert got["Content-Range"] == f"bytes 100-199/{size}"
    status, _, body = await get(session, url, headers={"Range": "bytes=5000-", "If-Range": etag})
    assert status == 206 and body == full[5000:]
    status, _, body = await get(
        session, url, headers={"Range": "bytes=5000-", "If-Range": LAST_MODIFIED}
    )
    assert status == 206 and body == full[5000:]
    status, _, body = await get(session, url, headers={"Range": "bytes=-10"})
    assert status == 206 and body == full[-10:]
    status, _, body = await get(
        session, url, headers={"Range": "bytes=5000-", "If-Range": '"another"'}
    )
    assert status == 200 and body == full
    status, got, _ = await get(session, url, headers={"Range": f"bytes={size}-"})
    assert status == 416 and got["Content-Range"] == f"bytes */{size}"
    counters = farm.counters[0]
    assert counters.range_requests == 6 and counters.partial_responses == 4
    path = url[len(farm.hosts[0].base_url) :]
    assert counters.image_fetches[path] == 6
    # Whole file through its end: the two 206s from 5000, the suffix one, the 200.
    assert counters.completed_image_fetches[path] == 4


async def test_a_host_without_range_support_answers_the_whole_file(session):
    async with VOFarm(hosts=1, config=HostConfig(range_support=False)) as farm:
        url, headers, full = await image(farm, session)
        assert headers["Accept-Ranges"] == "none"
        status, got, body = await get(session, url, headers={"Range": "bytes=100-199"})
        assert status == 200 and body == full and "Content-Range" not in got
        assert farm.counters[0].range_requests == 1 and farm.counters[0].partial_responses == 0


async def test_head_and_unknown_images(farm, session):
    url, _, full = await image(farm, session)
    async with session.head(url) as answer:
        assert answer.status == 200 and int(answer.headers["Content-Length"]) == len(full)
    base = farm.hosts[0].base_url
    for path in ("/images/999-0000.fits", "/images/450-0000.png", "/nothing"):
        status, _, _ = await get(session, base + path)
        assert status == 404


async def test_bandwidth_paces_images(session):
    config = HostConfig(image_bytes=200_000, bandwidth=1_000_000)
    async with VOFarm(hosts=1, config=config) as farm:
        url = farm.hosts[0].image_url(tile_of(*M51))
        started = time.monotonic()
        _, _, data = await get(session, url)
        elapsed = time.monotonic() - started
    assert len(data) > 195_000 and elapsed >= 0.15


# --- politeness -----------------------------------------------------------------------


async def test_rate_limit_is_enforced_and_a_paced_client_is_not_punished(session):
    async with VOFarm(hosts=1, config=HostConfig(rate_limit=5)) as farm:
        url = sia1_url(farm.hosts[0])
        answers = await asyncio.gather(*(get(session, url) for _ in range(30)))
        refused = [headers for status, headers, _ in answers if status == 429]
        assert len(refused) >= 25
        assert all(headers["Retry-After"] == "1" for headers in refused)
        assert farm.counters[0].rate_violations == len(refused)
        await asyncio.sleep(0.5)
        farm.reset_counters()
        statuses = []
        for _ in range(6):
            started = time.monotonic()
            statuses.append((await get(session, url))[0])
            await asyncio.sleep(max(0.0, 0.25 - (time.monotonic() - started)))
        assert statuses == [200] * 6
        assert farm.counters[0].rate_violations == 0 and farm.counters[0].requests == 6


async def test_a_no_burst_host_refuses_a_request_closer_than_its_interval(session):
    config = HostConfig(rate_limit=5, no_burst=True, tolerance=0.02)
    async with VOFarm(hosts=1, config=config) as farm:
        url = sia1_url(farm.hosts[0])
        statuses = []
        # 0.22 s apart (>= 0.2 - 0.02): served; then 0.1 s apart: refused, however
        # full a token bucket would be.
        for pause in (0.0, 0.22, 0.22, 0.1):
            await asyncio.sleep(pause)
            statuses.append((await get(session, url))[0])
        assert statuses == [200, 200, 200, 429]
        counters = farm.counters[0]
        assert counters.rate_violations == 1 and len(counters.refusal_times) == 1
        assert len(counters.search_times) == 3
        assert counters.refusal_times[0] == pytest.approx(0.54, abs=0.1)


@pytest.mark.parametrize("form", ["date", "none"])
async def test_retry_after_as_an_http_date_or_not_at_all(session, form):
    config = HostConfig(faults={"503": 1.0}, retry_after=form, retry_after_seconds=3)
    async with VOFarm(hosts=1, config=config) as farm:
        status, headers, _ = await get(session, sia1_url(farm.hosts[0]))
    assert status == 503
    if form == "none":
        assert "Retry-After" not in headers
    else:
        when = email.utils.parsedate_to_datetime(headers["Retry-After"])
        ahead = when.timestamp() - time.time()
        assert 2.0 <= ahead <= 4.01


async def test_a_rate_limit_not_enforced_is_counted_and_served(session):
    async with VOFarm(hosts=1, config=HostConfig(rate_limit=5, enforce=False)) as farm:
        url = sia1_url(farm.hosts[0])
        answers = await asyncio.gather(*(get(session, url) for _ in range(10)))
        assert {status for status, _, _ in answers} == {200}
        assert farm.counters[0].rate_violations >= 7


async def test_latency_and_requests_in_flight(session):
    async with VOFarm(hosts=1, config=HostConfig(latency=0.2)) as farm:
        started = time.monotonic()
        await asyncio.gather(*(get(session, sia1_url(farm.hosts[0])) for _ in range(5)))
        assert 0.2 <= time.monotonic() - started < 1.0
        assert farm.counters[0].max_in_flight == 5 and farm.counters[0].in_flight == 0


# --- faults ---------------------------------------------------------------------------


async def fetch_with_fault(kind, endpoint):
    """What a client sees of one answer from a host injecting ``kind`` every time."""
    config = HostConfig(faults={kind: 1.0}, stall_seconds=5.0)
    async with VOFarm(hosts=1, config=config) as farm:
        host = farm.hosts[0]
        url = sia1_url(host) if endpoint == "search" else host.image_url(tile_of(*M51))
        timeout = aiohttp.ClientTimeout(total=10, sock_read=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            try:
                outcome: object = await get(client, url)
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = exc
        return outcome, farm.counters[0]


@pytest.mark.parametrize("endpoint", ["search", "image"])
@pytest.mark.parametrize("kind", ["503", "429"])
async def test_status_faults(kind, endpoint):
    outcome, counters = await fetch_with_fault(kind, endpoint)
    status, headers, _ = outcome
    assert status == int(kind) and headers["Retry-After"] == "1"
    assert counters.faults == {kind: 1} and counters.rate_violations == 0


@pytest.mark.parametrize("endpoint", ["search", "image"])
@pytest.mark.parametrize(
    ("kind", "errors"),
    [
        (
            "reset",
            (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError),
        ),
        ("truncate", (aiohttp.ClientPayloadError,)),
        ("stall", (TimeoutError,)),
    ],
)
async def test_connection_faults(kind, errors, endpoint):
    started = time.monotonic()
    outcome, counters = await fetch_with_fault(kind, endpoint)
    assert isinstance(outcome, errors), outcome
    assert counters.faults == {kind: 1}
    assert counters.completed_image_fetches == {}
    assert 0 < counters.bytes_sent
    assert time.monotonic() - started < 3  # the stalled answer was cut when the farm stopped


@pytest.mark.parametrize(
    ("kind", "error"), [("malformed", FormatError), ("query_error", QueryError)]
)
async def test_votable_faults(kind, error):
    outcome, counters = await fetch_with_fault(kind, "search")
    status, _, body = outcome
    assert status == 200
    with pytest.raises(error):
        parse_sia(body)
    assert counters.faults == {kind: 1}
    # VOTable faults never touch images.
    outcome, counters = await fetch_with_fault(kind, "image")
    assert outcome[0] == 200 and outcome[2][:9] == b"SIMPLE  ="
    assert counters.faults == {}


async def test_faults_are_drawn_with_a_seeded_rng_and_spare_other_endpoints(session):
    config = HostConfig(faults={"503": 0.5}, fault_endpoints=("sia",))
    seen = []
    for _ in range(2):
        async with VOFarm(hosts=1, config=config, seed=3) as farm:
            url = sia1_url(farm.hosts[0])
            seen.append([(await get(session, url))[0] for _ in range(20)])
            for _ in range(5):
                assert (await get(session, farm.hosts[0].image_url(tile_of(*M51))))[0] == 200
            assert farm.counters[0].faults["503"] == seen[-1].count(503)
    assert seen[0] == seen[1] and 3 <= seen[0].count(503) <= 17


def test_host_config_is_validated():
    for bad in (
        {"latency": -1},
        {"rate_limit": 0},
        {"burst": 0.5},
        {"image_bytes": 0},
        {"bitpix": 8},
        {"images_per_search": 0},
        {"formats": ("image/png",)},
        {"faults": {"boom": 0.1}},
        {"faults": {"503": 0.7, "reset": 0.6}},
        {"faults": {"503": 1.5}},
        {"fault_endpoints": ("everything",)},
        {"bandwidth": 0},
        {"sia1_format_preset": "ALL"},
    ):
        with pytest.raises(ParameterError):
            HostConfig(**bad)
    config = HostConfig(faults={"503": 0.1, "stall": 0})
    assert dict(config.faults) == {"503": 0.1}
    assert set(FAULT_KINDS) == {
        "503",
        "429",
        "reset",
        "truncate",
        "stall",
        "malformed",
        "query_error",
    }
    assert dataclasses.replace(config, latency=1.0).latency == 1.0


# --- the farm -------------------------------------------------------------------------


async def test_hosts_are_on_different_addresses(session):
    async with VOFarm(hosts=2) as farm:
        assert [h.address for h in farm.hosts] == ["127.0.0.2", "127.0.0.3"]
        assert farm.registry_url == farm.hosts[0].base_url + "/tap"
        for host in farm.hosts:
            assert host.base_url == f"http://{host.address}:{host.port}"
            assert (await get(session, sia1_url(host)))[0] == 200
        assert [farm.counters[i].requests for i in (0, 1)] == [1, 1]
        assert farm.host_of(farm.hosts[1].sia2_url) is farm.hosts[1]
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.3", farm.hosts[0].port)


async def test_stop_is_bounded_while_a_client_waits_on_a_stall(session):
    config = HostConfig(faults={"stall": 1.0}, stall_seconds=60.0, image_bytes=1_000_000)
    farm = await VOFarm(hosts=1, config=config).start()
    fetch = asyncio.ensure_future(get(session, farm.hosts[0].image_url(tile_of(*M51))))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await farm.stop()
    assert time.monotonic() - started < 3
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(fetch, 5)


def test_importing_the_testing_package_loads_no_client():
    code = (
        "import sys, voharvest.testing\n"
        "print(sorted(m for m in ('voharvest.client', 'voharvest.transport', 'voharvest.services')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


async def test_serve_command_prints_urls_and_stops_by_itself(session):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voharvest.testing",
        "serve",
        "--hosts",
        "2",
        "--duration",
        "2",  # from "ready": time for the one GET below, then it stops by itself
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert ready["event"] == "ready"
        urls = [host["base_url"] for host in ready["hosts"]]
        assert len(urls) == 2 and urls[0].startswith("http://127.0.0.2:")
        assert ready["registry_url"] == urls[0] + "/tap"
        status, _, body = await get(session, ready["hosts"][1]["sia1_url"] + "?POS=10,10&SIZE=0.1")
        assert status == 200 and len(parse_sia(body)) >= 1
        rest, _ = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0
        stopped = json.loads(rest.decode().strip().splitlines()[-1])
        assert stopped["event"] == "stopped" and stopped["hosts"]["1"]["requests"] == 1
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_stall_shorter_than_the_read_timeout_still_delivers_the_file(session):
    config = HostConfig(faults={"stall": 1.0}, stall_seconds=0.3, fault_endpoints=("images",))
    async with VOFarm(hosts=1, config=config) as farm:
        host = farm.hosts[0]
        tile = tile_of(*M51)
        started = time.monotonic()
        status, _, data = await get(session, host.image_url(tile))
        assert status == 200 and time.monotonic() - started >= 0.3
        assert data == farm.sky.fits(tile, config.image_bytes, config.bitpix).read()
        counters = farm.counters[0]
        assert counters.faults == {"stall": 1}
        assert counters.completed_image_fetches == {f"/images/{tile.id}.fits": 1}
        assert counters.bytes_sent == len(data)


@pytest.mark.parametrize("kernel_stamps", [True, False], ids=["kernel-stamps", "handler-stamps"])
async def test_violations_after_the_farm_stalled_are_told_apart(monkeypatch, kernel_stamps):
    """A paced client; the farm's own loop blocked for 0.8 s: the requests that
    queued meanwhile reach the handlers together. Stamped by the kernel (Linux
    TCP_INFO), they arrived paced and none is a violation; stamped by the
    handler (elsewhere), they are violations marked as the farm's doing. A
    burst the client really sent is a violation either way."""
    import threading
    import urllib.error
    import urllib.request

    if kernel_stamps and _host._TCP_INFO is None:
        pytest.skip("no TCP_INFO arrival times on this system")
    if not kernel_stamps:
        monkeypatch.setattr(_host, "_TCP_INFO", None)
    async with VOFarm(hosts=1, config=HostConfig(rate_limit=5, enforce=False)) as farm:
        url = sia1_url(farm.hosts[0])
        await asyncio.sleep(0.5)  # a full bucket

        errors: list[Exception] = []
        begin = time.monotonic() + 0.1

        def one(slot: int) -> None:  # request ``slot`` leaves at its time, answered or not
            time.sleep(max(0.0, begin + 0.2 * slot - time.monotonic()))
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    answer.read()
            except urllib.error.URLError as exc:  # pragma: no cover - shown if it happens
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(slot,)) for slot in range(8)]
        for thread in threads:
            thread.start()
        await asyncio.sleep(0.25)
        time.sleep(0.8)  # the farm's loop stalls (deliberately blocking)  # noqa: ASYNC251
        for thread in threads:
            await asyncio.to_thread(thread.join, 30)
        assert errors == []
        counters = farm.counters[0]
        assert counters.requests == 8
        assert farm.watch.max_lag >= 0.7 and farm.watch.stalls >= 1
        if kernel_stamps:
            assert counters.rate_violations == 0
            gaps = [b - a for a, b in itertools.pairwise(counters.search_times)]
            assert min(gaps) < 0.05  # the handlers did see them together
        else:
            assert counters.rate_violations >= 1
            assert counters.rate_violations_after_stall == counters.rate_violations
        await asyncio.sleep(1.5)  # the stall is more than a second ago
        farm.reset_counters()
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(get(session, url) for _ in range(6)))
        assert counters.rate_violations >= 3 and counters.rate_violations_after_stall == 0


@pytest.mark.parametrize(("image_bytes", "bitpix"), [(1, 16), (64 * 1024, 16), (5_000_000, -32)])
def test_fits_sizes_are_known_without_building_the_file(image_bytes, bitpix):
    # A search answer states the size from Sky.fits_facts; the served file must match.
    sky = Sky(3)
    for tile in search_tiles(*M51, 1.0, 5):
        image = sky.fits(tile, image_bytes, bitpix)
        assert Sky.fits_facts(image_bytes, bitpix) == (image.size, image.naxis)
        assert len(image.read()) == image.size


def test_jpeg_previews_all_have_the_stated_length():
    # A search answer states Sky.JPEG_BYTES without rendering (the farm's loop stays free).
    sky = Sky(7)
    for tile in search_tiles(10.0, -30.0, 2.0, 12):
        data = sky.jpeg(tile)
        assert len(data) == Sky.JPEG_BYTES
        assert data[:4] == b"\xff\xd8\xff\xe0" and data.endswith(b"\xff\xd9")
        assert b"\xff\xfe" in data[:40]  # the padding is a comment segment after APP0


def test_a_no_burst_host_judges_each_arrival_against_both_neighbours():
    # Handlers may see arrivals out of order (several in one loop turn): a request
    # that reached the host between two others is checked against both.
    farm = VOFarm(hosts=1, config=HostConfig(rate_limit=10, no_burst=True, tolerance=0.015))
    server = farm._servers[0]
    assert [server._take_token(t) for t in (1.0, 1.3, 1.1)] == [True, True, True]
    assert server._take_token(1.2) is True  # 100 ms from 1.1 and from 1.3
    assert server._take_token(1.05) is False  # 50 ms after 1.0, seen late
    assert server._take_token(1.5) is True
    assert server._take_token(1.42) is False  # 80 ms before 1.5, seen after it


async def test_arrival_is_when_the_bytes_reached_the_socket():
    if _host._TCP_INFO is None:
        pytest.skip("no TCP_INFO arrival times on this system")
    seen: list[tuple[float, float]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((_host.arrival(request), time.monotonic()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        time.sleep(0.3)  # the server's loop is busy (it is ours)  # noqa: ASYNC251
        await reader.readuntil(b"ok")
        writer.close()
    finally:
        await runner.cleanup()
    ((arrived, handled),) = seen
    assert handled - sent >= 0.3
    assert abs(arrived - sent) < 0.03  # the kernel's tick (1-10 ms) and scheduling
