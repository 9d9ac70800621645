"""The NAVO notebook's image steps on DaCHS: registry -> SIA v1 / v2 -> JPEG and FITS.

Positions are given as coordinates (names would need Sesame, on the internet).
Every search is also made with pyvo, which must find the same files.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image
from pyvo.dal import SIAService as PyvoSIA
from pyvo.dal.sia2 import SIA2Query

from tests.integration.conftest import Dachs
from tests.integration.dachs.make_fits import NAXIS, TARGETS
from voharvest import OverflowWarning, QueryError
from voharvest.client import VOClient
from voharvest.protocol.datalink import DATALINK_MIME

M51 = SkyCoord(*TARGETS["M51"], unit="deg", frame="icrs")
M101 = SkyCoord(*TARGETS["M101"], unit="deg", frame="icrs")
JPEG_MAGIC = b"\xff\xd8\xff"


def assert_fits_covers(path: Path, position: SkyCoord) -> fits.Header:
    """The file is a FITS image whose celestial WCS has ``position`` on its pixels."""
    with fits.open(path) as hdus:
        header = hdus[0].header.copy()
        shape = hdus[0].data.shape
    wcs = WCS(header)
    assert wcs.has_celestial
    assert wcs.footprint_contains(position)
    x, y = wcs.world_to_pixel(position)
    assert -0.5 <= x < shape[1] - 0.5 and -0.5 <= y < shape[0] - 0.5
    return header


def assert_jpeg(path: Path, size: tuple[int, int] | None = (NAXIS, NAXIS)) -> None:
    assert path.read_bytes()[:3] == JPEG_MAGIC
    with Image.open(path) as image:
        assert image.format == "JPEG"
        if size is not None:
            assert image.size == size


def pyvo_sia1(url: str, pos: SkyCoord, size: float, format: str | None) -> set[str]:
    results = PyvoSIA(url).search(pos=pos, size=size, format=format)
    return {record.getdataurl() for record in results}


def pyvo_sia2(url: str, **params: object) -> set[str]:
    return {record.access_url for record in SIA2Query(url, **params).execute()}


# --- SIA v1 ---------------------------------------------------------------------


async def test_notebook_uv_jpeg_then_fits(client: VOClient, tmp_path: Path) -> None:
    """regsearch(sia, uv, swift) -> search M51 for JPEGs -> show one -> fetch the FITS."""
    (uvot,) = await client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])
    sia = uvot.service("sia")

    jpegs = await sia.search(pos=M51, size=0.2, format="image/jpeg")
    assert [r.format for r in jpegs] == ["image/jpeg"]
    assert jpegs[0].title == "VOH UVOT M51 uvw1 (JPEG)"
    assert {r.getdataurl() for r in jpegs} == pyvo_sia1(sia.access_url, M51, 0.2, "image/jpeg")
    jpeg = await client.download(jpegs[0], tmp_path)
    assert jpeg.name == "uvot_m51_uvw1.jpg"
    assert jpeg.stat().st_size == jpegs[0].filesize
    assert_jpeg(jpeg)

    images = await sia.search(pos=M51, size=0.2, format="image/fits")
    assert [r.format for r in images] == ["image/fits"]
    assert {r.getdataurl() for r in images} == pyvo_sia1(sia.access_url, M51, 0.2, "image/fits")
    path = await client.download(images[0], tmp_path)
    header = assert_fits_covers(path, M51)
    assert header["OBJECT"] == "M51"
    assert header["FILTER"] == "uvw1"
    # The record's footprint metadata agrees with the file's WCS.
    assert images[0].position is not None
    assert images[0].position.separation(M51) < 0.1 * u.deg


@pytest.mark.parametrize("collection", ["sdss", "uvot"])
@pytest.mark.parametrize("target", ["M51", "M101"])
async def test_records_are_those_pyvo_finds(
    client: VOClient, dachs: Dachs, collection: str, target: str
) -> None:
    position = SkyCoord(*TARGETS[target], unit="deg")
    url = dachs.sia1(collection)
    results = await client.sia_service(url).search(position, 0.2)
    assert {r.getdataurl() for r in results} == pyvo_sia1(url, position, 0.2, None)
    bands = 2 if collection == "sdss" else 1
    assert sorted(r.format for r in results) == ["image/fits"] * bands + ["image/jpeg"] * bands
    for record in results:
        assert record.title.startswith(f"VOH {collection.upper()} {target} ")
        assert record.position.separation(position) < 0.1 * u.deg
        assert record.filesize and record.filesize > 0


async def test_two_hosts_one_with_a_format_preset(client: VOClient, tmp_path: Path) -> None:
    """The notebook's last step: the 'sloan' services of two hosts, one presetting FORMAT.

    FORMAT=ALL must not be sent to the one whose access URL presets
    FORMAT=image/fits: it keeps answering FITS only.
    """
    found = await client.regsearch(servicetype="sia", waveband="optical", keywords=["sloan"])
    services = {r.ivoid: r.service("sia") for r in found}
    main = services["ivo://voharvest.test/sdss/q/i"]
    mirror = services["ivo://voharvest.test/sdss/mirror"]
    assert urlsplit(main.access_url).hostname == "localhost"
    assert urlsplit(mirror.access_url).hostname == "127.0.0.1"
    assert "FORMAT=image/fits" in mirror.access_url

    everything = await main.search(M51, 0.2, format="ALL")
    assert sorted(r.format for r in everything) == ["image/fits"] * 2 + ["image/jpeg"] * 2
    preset = await mirror.search(M51, 0.2, format="ALL")
    assert mirror.search_url(M51, 0.2, format="ALL").count("FORMAT=") == 1
    assert [r.format for r in preset] == ["image/fits"] * 2

    # Both hosts lead to the same images: compare them, as the notebook does.
    fits_main = sorted(r.getdataurl() for r in everything if r.format == "image/fits")
    fits_mirror = sorted(r.getdataurl() for r in preset)
    assert fits_main == fits_mirror
    for url in fits_main:
        a = await client.download(url, tmp_path / "main")
        b = await client.download(url, tmp_path / "mirror")
        assert a.read_bytes() == b.read_bytes()
        assert_fits_covers(a, M51)
    origins = set(client.stats)
    assert {"http://localhost:8080", "http://127.0.0.1:8080"} <= origins


async def test_nothing_where_there_are_no_images(client: VOClient, dachs: Dachs) -> None:
    results = await client.sia_service(dachs.sia1("sdss")).search((0.0, -60.0), 0.5)
    assert len(results) == 0


async def test_the_service_refusing_a_parameter_is_a_query_error(
    client: VOClient, dachs: Dachs
) -> None:
    with pytest.raises(QueryError) as caught:
        await client.sia_service(dachs.sia1("sdss")).search(M51, 0.2, RESPONSEFORMAT="bogus")
    assert "'bogus' is not a valid value for responseformat" in caught.value.message


# --- SIA v2 ---------------------------------------------------------------------


async def test_sia2_from_the_registry(client: VOClient, dachs: Dachs, tmp_path: Path) -> None:
    (site,) = await client.regsearch(servicetype="sia2", keywords=["swift"])
    sia2 = site.service("sia2")
    results = await sia2.search(pos=(M51, 0.05 * u.deg))
    assert results.version == 2
    urls = {r.getdataurl() for r in results}
    assert urls == pyvo_sia2(sia2.access_url, pos=(M51, 0.05 * u.deg))
    assert {r["obs_collection"] for r in results} == {"VOH SDSS", "VOH UVOT", "VOH DLIMG"}
    assert all(r.dataproduct_type == "image" and r.calib_level == 2 for r in results)
    # SDSS-like g and r and UVOT-like uvw1: each a FITS and a JPEG.
    files = [r for r in results if r["obs_collection"] in ("VOH SDSS", "VOH UVOT")]
    assert sorted(r.format for r in files) == ["image/fits"] * 3 + ["image/jpeg"] * 3
    assert not any(r.is_datalink for r in files)
    # The DataLink collection's J and Ks: their access_url is the DataLink document.
    linked = [r for r in results if r["obs_collection"] == "VOH DLIMG"]
    assert [r.format for r in linked] == [DATALINK_MIME] * 2
    assert all(r.is_datalink for r in linked)
    assert sorted(r.getdataurl() for r in linked) == sorted(
        dachs.dlmeta(dachs.dlimg_pubdid("M51", band)) for band in ("J", "Ks")
    )

    fits_record = next(
        r for r in results if r["obs_collection"] == "VOH UVOT" and r.format == "image/fits"
    )
    path = await client.download(fits_record, tmp_path)
    assert_fits_covers(path, M51)

    # DaCHS renders a JPEG preview of every product itself.
    preview = await client.download(
        fits_record["preview"], tmp_path, filename="preview.jpg", expected_format="image/jpeg"
    )
    assert_jpeg(preview, size=None)


async def test_sia2_constraints_match_pyvo(client: VOClient, dachs: Dachs) -> None:
    sia2 = client.sia_service(dachs.sia2, version=2)
    circle = (*TARGETS["M101"], 0.05)

    optical_fits = await sia2.search(pos=circle, band=(400 * u.nm, 700 * u.nm), format="image/fits")
    assert {r.getdataurl() for r in optical_fits} == pyvo_sia2(
        dachs.sia2, pos=circle, band=(4e-7, 7e-7), format="image/fits"
    )
    assert sorted(r.title for r in optical_fits) == ["VOH SDSS M101 g", "VOH SDSS M101 r"]

    uvot = await sia2.search(pos=circle, collection="VOH UVOT")
    assert {r.getdataurl() for r in uvot} == pyvo_sia2(
        dachs.sia2, pos=circle, collection="VOH UVOT"
    )
    assert len(uvot) == 2

    in_2004 = await sia2.search(pos=circle, time=(53070.0, 53080.0))
    assert len(in_2004) == 6
    later = await sia2.search(pos=circle, time=(54000.0, 54100.0))
    assert len(later) == 0

    # Around M51 the DataLink collection answers too: FORMAT and COLLECTION
    # tell it apart (its access_format is DataLink's, not FITS).
    m51 = (*TARGETS["M51"], 0.05)
    fits_only = await sia2.search(pos=m51, format="image/fits")
    assert {r.getdataurl() for r in fits_only} == pyvo_sia2(
        dachs.sia2, pos=m51, format="image/fits"
    )
    assert sorted(r.title for r in fits_only) == [
        "VOH SDSS M51 g",
        "VOH SDSS M51 r",
        "VOH UVOT M51 uvw1",
    ]
    for selected in (
        await sia2.search(pos=m51, collection="VOH DLIMG"),
        await sia2.search(pos=m51, format=DATALINK_MIME),
    ):
        assert sorted(r.title for r in selected) == ["VOH DLIMG M51 J", "VOH DLIMG M51 Ks"]
        assert all(r.is_datalink for r in selected)
    assert {
        r.getdataurl() for r in await sia2.search(pos=m51, collection="VOH DLIMG")
    } == pyvo_sia2(dachs.sia2, pos=m51, collection="VOH DLIMG")
    # In infrared only (J: 1.08-1.41 um, Ks: 1.99-2.31 um), the two bands apart.
    ks_only = await sia2.search(pos=m51, band=(2.0 * u.um, 2.2 * u.um))
    assert [r.title for r in ks_only] == ["VOH DLIMG M51 Ks"]
    # Their dates (November 2010) are the DataLink collection's own.
    in_2010 = await sia2.search(pos=m51, time=(55500.0, 55530.0))
    assert sorted(r["obs_collection"] for r in in_2010) == ["VOH DLIMG"] * 2


async def test_sia2_truncated_answer_warns(client: VOClient, dachs: Dachs) -> None:
    """Around M51: 8 records (SDSS-like g, r and UVOT-like uvw1 as FITS and
    JPEG, and the DataLink collection's J and Ks)."""
    sia2 = client.sia_service(dachs.sia2, version=2)
    with pytest.warns(OverflowWarning, match="QUERY_STATUS=OVERFLOW"):
        results = await sia2.search(pos=(M51, 0.05), maxrec=2)
    assert len(results) == 2
    with pytest.warns(OverflowWarning, match="QUERY_STATUS=OVERFLOW"):
        results = await sia2.search(pos=(M51, 0.05), maxrec=7)
    assert len(results) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(await sia2.search(pos=(M51, 0.05), maxrec=8)) == 8
