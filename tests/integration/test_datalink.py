"""DataLink and SODA through the client, against DaCHS's ``dlimg`` collection.

The collection (tests/integration/dachs/dlimg/q.rd) is in ``ivoa.obscore``: the
site-wide SIA v2 service finds its images with the DataLink document as
``access_url``. A download of such a record must resolve the document and
save the FITS file (never the document); with a cutout it must ask the
document's SODA service. DaCHS's failures (an unknown dataset, a region off
the image) must come back as typed errors, leaving no file. pyvo reads the
same documents as the oracle.

Run with ``-s`` to see the byte sizes quoted in docs/integration.md.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from pyvo.dal import SIAService as PyvoSIA
from pyvo.dal.adhoc import DATALINK_IVOID, DatalinkQuery, DatalinkResults, SodaQuery

from tests.integration.conftest import DLIMG, PUBDID_PREFIX, Dachs
from tests.integration.dachs.make_fits import DLIMG_NAXIS, TARGETS
from tests.integration.test_sia import assert_fits_covers, assert_jpeg
from voharvest import Cutout, DataLinkError, FormatError
from voharvest.client import VOClient
from voharvest.naming import dataset_filename
from voharvest.protocol.datalink import DATALINK_MIME, SODA_SYNC
from voharvest.protocol.records import ImageRecord

M51 = SkyCoord(*TARGETS["M51"], unit="deg", frame="icrs")
#: An 800 x 800 float32 image and its header (make_fits.py writes the same bytes).
FULL_BYTES = 2_563_200
#: A circle of 1.5 arcmin radius on 1 arcsec pixels: a square of about 181 pixels.
CIRCLE = "1.5arcmin"
#: A box 3 arcmin wide (RA) and 2 arcmin high (Dec).
BOX = Cutout.box("3arcmin", "2arcmin")
#: Off the M51 images (they reach Dec 47.34): DaCHS cuts nothing there.
OUTSIDE = SkyCoord(202.47, 48.0, unit="deg")


def product_url(dachs: Dachs, band: str) -> str:
    """The getproduct URL of the M51 image in ``band``, as DaCHS writes it."""
    return f"{dachs.server_url}/getproduct/voharvest/dlimg/data/dlimg_m51_{band}.fits"


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder`` (none if it doesn't exist)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


async def sitewide_dlimg(client: VOClient, dachs: Dachs) -> dict[str, ImageRecord]:
    """The site-wide SIA v2 service's dlimg records at M51, by band."""
    results = await client.sia_service(dachs.sia2, version=2).search(pos=(M51, 0.05 * u.deg))
    found = [r for r in results if r["obs_collection"] == "VOH DLIMG"]
    return {r.title.rsplit(" ", 1)[-1]: r for r in found}


def assert_cut_from(cutout: Path, full: Path) -> None:
    """The cutout's pixels are those of the full frame where its WCS puts them."""
    with fits.open(cutout) as small, fits.open(full) as large:
        corner = WCS(small[0].header).pixel_to_world(0, 0)
        x, y = WCS(large[0].header).world_to_pixel(corner)
        left, bottom = int(np.round(x)), int(np.round(y))
        assert abs(x - left) < 1e-3 and abs(y - bottom) < 1e-3  # on the same pixel grid
        piece = small[0].data
        rows, columns = piece.shape
        window = large[0].data[bottom : bottom + rows, left : left + columns]
        assert np.array_equal(window, piece)


def shape_of(path: Path) -> tuple[int, int]:
    with fits.open(path) as hdus:
        return tuple(hdus[0].data.shape)


# --- (a) the site-wide SIA v2 service leads to DataLink records -------------------


async def test_sitewide_sia2_finds_datalink_records_and_download_gets_the_fits(
    client: VOClient, dachs: Dachs, tmp_path: Path
) -> None:
    records = await sitewide_dlimg(client, dachs)
    assert sorted(records) == ["J", "Ks"]
    for band, record in records.items():
        pubdid = dachs.dlimg_pubdid("M51", band)
        assert record.is_datalink
        assert record.format == DATALINK_MIME
        assert record.publisher_did == pubdid
        assert record.getdataurl() == record.datalink_url == dachs.dlmeta(pubdid)
        assert record.links is None  # not fetched yet
    # The collection's own SIA v2 service gives the same documents.
    own = await client.sia_service(dachs.dlimg_sia2, version=2).search(pos=(M51, 0.05 * u.deg))
    assert {r.getdataurl() for r in own} == {r.getdataurl() for r in records.values()}

    record = records["J"]
    path = await client.download(record, tmp_path)
    # The FITS file, not the DataLink document, and nothing else beside it.
    assert path.name == "dlimg_m51_J.fits"
    assert files_in(tmp_path) == ["dlimg_m51_J.fits"]
    assert path.read_bytes()[:30] == b"SIMPLE  =                    T"
    header = assert_fits_covers(path, M51)
    assert (header["OBJECT"], header["FILTER"]) == ("M51", "J")
    assert shape_of(path) == (DLIMG_NAXIS, DLIMG_NAXIS)

    # The download kept the document on the record.
    links = record.links
    assert links is not None
    assert links.url == dachs.dlmeta(dachs.dlimg_pubdid("M51", "J"))
    (this,) = links.this()
    assert this.access_url == product_url(dachs, "J")
    assert this.content_type == "image/fits"
    assert path.stat().st_size == this.content_length == FULL_BYTES
    assert [p.access_url for p in links.previews] == [f"{product_url(dachs, 'J')}?preview=True"]
    assert links.previews[0].access_url == record["preview"]
    assert links.progenitors == []
    assert links.errors == []
    # DaCHS renders the preview itself: a JPEG.
    preview = await client.download(
        links.previews[0].access_url,
        tmp_path / "preview",
        filename="preview.jpg",
        expected_format="image/jpeg",
    )
    assert_jpeg(preview, size=None)


# --- (b) SODA cutouts around M51 -------------------------------------------------------


async def test_circle_cutout_is_a_small_fits_holding_m51(
    client: VOClient, dachs: Dachs, tmp_path: Path
) -> None:
    record = (await sitewide_dlimg(client, dachs))["J"]
    planned = await client.datasets(record, cutout=CIRCLE, position=M51)
    assert [(d.mode, d.format, d.region) for d in planned] == [
        ("cutout", "image/fits", "CIRCLE 202.469575 47.195258 0.025")
    ]
    assert planned[0].url.startswith(f"{dachs.dlimg_dlget}?")
    assert planned[0].via == record.getdataurl()
    assert planned[0].previews == (f"{product_url(dachs, 'J')}?preview=True",)

    cutout = await client.download(record, tmp_path / "cut", cutout=CIRCLE, position=M51)
    assert cutout.name == dataset_filename(planned[0])
    assert cutout.name.startswith("dlimg_m51_J_cutout-") and cutout.suffix == ".fits"
    assert files_in(tmp_path / "cut") == [cutout.name]
    header = assert_fits_covers(cutout, M51)
    assert header["OBJECT"] == "M51"
    # 1.5 arcmin around M51 on 1 arcsec pixels: about 181 x 181 of the 800 x 800.
    rows, columns = shape_of(cutout)
    assert 175 <= rows <= 185 and 175 <= columns <= 185

    full = await client.download(record, tmp_path / "full")
    size, whole = cutout.stat().st_size, full.stat().st_size
    print(f"\ndlimg M51 J: full frame {whole} bytes, {CIRCLE} circle cutout {size} bytes")
    assert whole == FULL_BYTES
    assert 0.04 < size / whole < 0.07
    assert_cut_from(cutout, full)


async def test_box_cutout_is_wider_than_high(
    client: VOClient, dachs: Dachs, tmp_path: Path
) -> None:
    record = (await sitewide_dlimg(client, dachs))["Ks"]
    path = await client.download(record, tmp_path, cutout=BOX, position=M51)
    header = assert_fits_covers(path, M51)
    assert (header["OBJECT"], header["FILTER"]) == ("M51", "Ks")
    # 3 arcmin of RA (columns) by 2 arcmin of Dec (rows), on 1 arcsec pixels.
    rows, columns = shape_of(path)
    assert 115 <= rows <= 125 and 175 <= columns <= 185
    size = path.stat().st_size
    print(f"\ndlimg M51 Ks: 3 x 2 arcmin box cutout {size} bytes (full frame {FULL_BYTES})")
    assert 0.025 < size / FULL_BYTES < 0.045
    assert files_in(tmp_path) == [path.name]


# --- (c), (d) what DaCHS refuses ---------------------------------------------------------


async def test_unknown_dataset_is_a_datalink_error_in_dachs_words(
    client: VOClient, dachs: Dachs, tmp_path: Path
) -> None:
    unknown = f"{PUBDID_PREFIX}voharvest/dlimg/data/dlimg_m31_J.fits"
    document = dachs.dlmeta(unknown)
    # DaCHS answers 200 with one error row for the ID.
    links = await client.datalinks(document)
    (error,) = links.errors
    assert error.id == unknown
    assert error.error_message is not None
    assert error.error_message.startswith("NotFoundFault: ")

    with pytest.raises(DataLinkError) as caught:
        await client.download(document, tmp_path)
    assert "NotFoundFault: accref 'voharvest/dlimg/data/dlimg_m31_J.fits'" in str(caught.value)
    assert "could not be located" in caught.value.message
    assert caught.value.dataset_id == unknown
    assert caught.value.url == document
    assert files_in(tmp_path) == []


async def test_cutout_off_the_image_is_a_format_error_and_no_file(
    client: VOClient, dachs: Dachs, tmp_path: Path
) -> None:
    record = (await sitewide_dlimg(client, dachs))["J"]
    before = client.stats[dachs.server_url].statuses.get(204, 0)
    with pytest.raises(FormatError, match="204") as caught:
        await client.download(record, tmp_path, cutout="1arcmin", position=OUTSIDE)
    assert caught.value.url is not None
    assert caught.value.url.startswith(f"{dachs.dlimg_dlget}?")
    assert "CIRCLE=202.47%2048" in caught.value.url
    # DaCHS did answer 204 No Content (once: it is not retried).
    assert client.stats[dachs.server_url].statuses.get(204, 0) == before + 1
    assert files_in(tmp_path) == []


# --- (e) SIA v1: the answer's DataLink service descriptor ---------------------------------


async def test_sia1_descriptor_leads_to_datalink_and_cutout(
    client: VOClient, dachs: Dachs, tmp_path: Path
) -> None:
    results = await client.sia_service(dachs.dlimg_sia1).search(M51, 0.2)
    records = {r.title.rsplit(" ", 1)[-1]: r for r in results}
    assert sorted(records) == ["J", "Ks"]
    record = records["J"]
    # The access reference is the FITS file; the DataLink document is found
    # through the answer's links-1.0 descriptor, with the row's pub_did as ID.
    assert record.format == "image/fits"
    assert not record.is_datalink
    assert record.getdataurl() == product_url(dachs, "J")
    dl_url = record.datalink_url
    assert dl_url is not None
    assert dl_url.split("?", 1)[0] == f"{dachs.server_url}{DLIMG}/dl/dlmeta"
    assert parse_qs(urlsplit(dl_url).query) == {"ID": [dachs.dlimg_pubdid("M51", "J")]}

    # pyvo builds the same DataLink query from the same answer.
    theirs = PyvoSIA(dachs.dlimg_sia1).search(pos=M51, size=0.2)
    resource = theirs.get_adhocservice_by_ivoid(DATALINK_IVOID)
    row = next(r for r in theirs if str(r.getdataurl()) == product_url(dachs, "J"))
    query = DatalinkQuery.from_resource(row, resource)
    assert dl_url.split("?", 1)[0] == query.baseurl
    assert parse_qs(urlsplit(dl_url).query) == {k: [str(v)] for k, v in query.items()}

    cutout = await client.download(record, tmp_path, cutout=CIRCLE, position=M51)
    assert cutout.name.startswith("dlimg_m51_J_cutout-")
    assert_fits_covers(cutout, M51)
    assert 0.04 < cutout.stat().st_size / FULL_BYTES < 0.07
    assert record.links is not None and record.links.url == dl_url
    assert files_in(tmp_path) == [cutout.name]


# --- (f) pyvo as the oracle ---------------------------------------------------------------


async def test_pyvo_reads_the_same_datalink_document(
    client: VOClient, dachs: Dachs, tmp_path: Path
) -> None:
    document = dachs.dlmeta(dachs.dlimg_pubdid("M51", "J"))
    ours = await client.datalinks(document)
    theirs = DatalinkResults.from_result_url(document)

    # #this (without the vocabulary's narrower terms: pyvo would fetch it online).
    this = [str(r.access_url) for r in theirs.bysemantics("#this", include_narrower=False)]
    assert [link.access_url for link in ours.this()] == this == [product_url(dachs, "J")]

    # The SODA service descriptor: pyvo's first #proc link and its descriptor.
    found = ours.soda_sync()
    assert found is not None
    descriptor, link = found
    first = theirs.get_first_proc()
    assert link.service_def == str(first["service_def"])
    resource = theirs.get_adhocservice_by_id(str(first["service_def"]))
    params = {p.name: str(p.value) for p in resource.params}
    assert descriptor.access_url == params["accessURL"] == dachs.dlimg_dlget
    assert descriptor.standard_id == params["standardID"] == SODA_SYNC

    # The same cutout through pyvo's SODA query: the same bytes.
    path = await client.download(document, tmp_path, cutout=CIRCLE, position=M51)
    soda = SodaQuery.from_resource(first, resource, circle=(M51.ra.deg, M51.dec.deg, 0.025))
    assert soda["ID"] == dachs.dlimg_pubdid("M51", "J")
    assert soda.execute_stream().read() == path.read_bytes()
