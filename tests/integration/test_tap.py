"""TAP on DaCHS: sync queries, and async UWS jobs that complete, fail or run out of time.

Every job run_async creates must be gone from the server's job list
afterwards, whatever happened to it.
"""

from __future__ import annotations

import asyncio
import re
import time
import warnings

import pytest
from pyvo.dal import TAPService as PyvoTAP

from tests.integration.conftest import Dachs
from tests.integration.dachs.make_fits import dlimg_images
from voharvest import JobError, OverflowWarning, QueryError, RequestTimeoutError
from voharvest.client import VOClient
from voharvest.protocol import tap

COUNT_BY_COLLECTION = (
    "SELECT obs_collection, COUNT(*) AS n FROM ivoa.obscore"
    " GROUP BY obs_collection ORDER BY obs_collection"
)
#: ivoa.obscore: the SDSS-like and UVOT-like collections (every FITS file and
#: its JPEG: 6 and 4 images) and the DataLink collection (6 images, one row
#: each, whose access_url is the DataLink document).
EXPECTED_COUNTS = [("VOH DLIMG", 6), ("VOH SDSS", 12), ("VOH UVOT", 8)]
OBSCORE_ROWS = sum(n for _, n in EXPECTED_COUNTS)
#: DaCHS's own wording for a table that isn't there.
NO_TABLE = "Could not locate table 'public.nowhere'"
#: Polls of a job block at most this long. DaCHS leaves a job PENDING until it
#: is started (see test_dachs_ignores_phase_run_at_creation): run_async's first
#: look at a job is without WAIT, so it starts such a job at once.
WAIT = 1


async def job_ids(client: VOClient, dachs: Dachs) -> set[str]:
    answer = await client.transport.request("GET", f"{dachs.tap}/async")
    return set(re.findall(r'jobref id="([^"]+)"', answer.body.decode("utf-8")))


def rows(results: object) -> list[tuple[object, ...]]:
    return [tuple(record.to_dict().values()) for record in results]  # type: ignore[attr-defined]


async def test_sync_query_agrees_with_pyvo(client: VOClient, dachs: Dachs) -> None:
    results = await client.tap_service(dachs.tap).run_sync(COUNT_BY_COLLECTION)
    assert results.fieldnames == ["obs_collection", "n"]
    assert rows(results) == EXPECTED_COUNTS
    theirs = PyvoTAP(dachs.tap).run_sync(COUNT_BY_COLLECTION)
    assert rows(results) == [(r["obs_collection"], r["n"]) for r in theirs]


async def test_sync_query_on_the_tap_service_found_in_the_registry(client: VOClient) -> None:
    (found,) = await client.regsearch(servicetype="tap", datamodel="obscore")
    service = found.service("tap")
    results = await service.run_sync(
        "SELECT ivoid FROM rr.resource WHERE res_type = 'vr:organisation'"
    )
    assert rows(results) == [("ivo://voharvest.test/org",)]


async def test_sync_overflow_warns(client: VOClient, dachs: Dachs) -> None:
    service = client.tap_service(dachs.tap)
    with pytest.warns(OverflowWarning, match="QUERY_STATUS=OVERFLOW"):
        results = await service.run_sync("SELECT access_url FROM ivoa.obscore", maxrec=3)
    assert len(results) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        everything = await service.run_sync("SELECT access_url FROM ivoa.obscore")
    urls = [str(record["access_url"]) for record in everything]
    assert len(urls) == OBSCORE_ROWS == 26
    # The files of sdss and uvot (FITS and JPEG), and dlimg's DataLink documents.
    products = [url for url in urls if url.startswith(f"{dachs.server_url}/getproduct/voharvest/")]
    documents = [url for url in urls if url.startswith(dachs.dlmeta(""))]
    assert len(products) == len(set(products)) == 20
    assert {url.rsplit(".", 1)[-1] for url in products} == {"fits", "jpg"}
    assert sorted(documents) == sorted(
        dachs.dlmeta(dachs.dlimg_pubdid(target, band)) for target, band in dlimg_images()
    )


async def test_sync_error_is_a_query_error_in_the_servers_words(
    client: VOClient, dachs: Dachs
) -> None:
    with pytest.raises(QueryError) as caught:
        await client.tap_service(dachs.tap).run_sync("SELECT nonsense FROM nowhere")
    assert NO_TABLE in caught.value.message


async def test_async_job_completes_and_is_deleted(client: VOClient, dachs: Dachs) -> None:
    before = await job_ids(client, dachs)
    started = time.monotonic()
    results = await client.tap_service(dachs.tap).run_async(COUNT_BY_COLLECTION, wait=WAIT)
    assert rows(results) == EXPECTED_COUNTS
    assert time.monotonic() - started < 30
    assert await job_ids(client, dachs) == before


async def test_async_job_in_error_phase(client: VOClient, dachs: Dachs) -> None:
    before = await job_ids(client, dachs)
    service = client.tap_service(dachs.tap)

    async def failure(query: str) -> JobError:
        with pytest.raises(JobError) as caught:
            await service.run_async(query, wait=WAIT)
        return caught.value

    # Two jobs side by side (DaCHS runs each in a process of its own).
    no_table, no_parse = await asyncio.gather(
        failure("SELECT nonsense FROM nowhere"), failure("SELEKT 1")
    )
    assert no_table.phase == "ERROR"
    assert NO_TABLE in str(no_table)
    assert no_parse.phase == "ERROR"
    assert "Could not parse your query" in str(no_parse)
    assert await job_ids(client, dachs) == before


async def test_async_job_past_its_deadline_is_aborted_and_deleted(
    client: VOClient, dachs: Dachs
) -> None:
    before = await job_ids(client, dachs)
    with pytest.raises(RequestTimeoutError, match="deadline"):
        await client.tap_service(dachs.tap).run_async(
            COUNT_BY_COLLECTION, wait=WAIT, deadline=0.001
        )
    assert await job_ids(client, dachs) == before


async def test_dachs_ignores_phase_run_at_creation(client: VOClient, dachs: Dachs) -> None:
    """A fact about DaCHS 2.7 that shapes run_async's timing (see WAIT above).

    UWS lets the creating POST carry PHASE=RUN; DaCHS creates the job but leaves
    it PENDING, and its WAIT blocks on PENDING jobs too.
    """
    transport = client.transport
    created = await transport.request(
        "POST",
        f"{dachs.tap}/async",
        data=tap.async_fields("SELECT 1 AS one FROM rr.resource", run=True),
        idempotent=False,
        allow_redirects=False,
        ok=(303,),
    )
    job_url = created.headers["Location"]
    try:
        answer = await transport.request("GET", job_url)
        assert tap.parse_job(answer.body, url=job_url).phase == "PENDING"
    finally:
        await transport.request("DELETE", job_url, allow_redirects=False, ok=(303,))
