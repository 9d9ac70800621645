"""VOClient end to end: registry, SIA v1/v2, Sesame, TAP sync and UWS jobs, downloads.

Every service here is a handler on 127.0.0.1 answering with what real services
recorded (pyvo's test data), and every test checks what the server received as
well as what the client returned or raised. pyvo parses the same answers as the
oracle.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import os
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl

import aiohttp
import pytest
from aiohttp import web
from astropy import units as u
from astropy.io.votable import parse as astropy_parse
from astropy.io.votable import tree
from pyvo.dal.sia import SIAResults as PyvoSIAResults
from pyvo.dal.sia2 import SIA2Results as PyvoSIA2Results
from pyvo.registry.regtap import RegistryResults as PyvoRegistryResults

from tests.recorded import pyvo_data
from tests.servers import Hit, LocalServer, votable_response
from voharvest import (
    ClientConfig,
    ClientStateError,
    ConnectError,
    FormatError,
    HostPolicy,
    HTTPStatusError,
    JobError,
    NameResolutionError,
    NoServiceError,
    ParameterError,
    PayloadError,
    QueryError,
    RegistryEndpoint,
    RegistryFeatures,
    RequestTimeoutError,
    RetryPolicy,
    ServiceError,
    Timeouts,
    UnsupportedConstraintError,
    VOClient,
)
from voharvest.protocol.regtap import FIELD_SEPARATOR, INTERFACE_SEPARATOR
from voharvest.services import RegistryResource, SIA2Service, SIAService, TAPService

DAL = "pyvo.dal.tests"
REGISTRY = "pyvo.registry.tests"
UWS = "pyvo.io.uws.tests"

FAST_RETRY = RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.0)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_config(
    server: LocalServer,
    *,
    registries: Sequence[RegistryEndpoint] | None = None,
    sesame: Sequence[str] | None = None,
) -> ClientConfig:
    return ClientConfig(
        registries=tuple(registries or (RegistryEndpoint(server.url("/reg/tap")),)),
        sesame=tuple(sesame or (server.url("/sesame"),)),
        retry=FAST_RETRY,
        host=HostPolicy(rate=math.inf, concurrency=8),
        timeouts=Timeouts(connect=5, read=5, total=10),
    )


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[VOClient]:
    async with VOClient(make_config(server)) as opened:
        yield opened


# --- helpers -----------------------------------------------------------------------------


def serve(
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "application/x-votable+xml",
    seen: list[list[tuple[str, str]]] | None = None,
) -> Handler:
    """A handler that always answers ``body``; ``seen`` collects the raw query pairs."""

    async def handler(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(parse_qsl(request.query_string, keep_blank_values=True))
        return web.Response(body=body, status=status, content_type=content_type)

    return handler


def requests(server: LocalServer, method: str, path: str) -> list[Hit]:
    return [hit for hit in server.hits if hit.method == method and hit.path == path]


def form_of(hit: Hit) -> dict[str, list[str]]:
    return parse_qs(hit.body.decode("utf-8"), keep_blank_values=True)


def quiet_votable(data: bytes) -> tree.VOTableFile:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return astropy_parse(io.BytesIO(data), verify="ignore")


def numbers(text: str, sep: str = " ") -> list[float]:
    return [float(item) for item in text.split(sep)]


async def eventually(check: Callable[[], bool], within: float = 2.0) -> None:
    """Wait until ``check()`` holds (the server sees requests a little after they are sent)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not become true in time")
        await asyncio.sleep(0.01)


def registry_votable(rows: Sequence[tuple[str, str, Sequence[tuple[str, ...]]]]) -> bytes:
    """A RegTAP answer in the layout our query asks for: (ivoid, title, interfaces).

    Each interface is (standard_id, type, role, version, access_url, description).
    """
    doc = tree.VOTableFile()
    resource = tree.Resource()
    resource.type = "results"
    doc.resources.append(resource)
    table = tree.TableElement(doc)
    resource.tables.append(table)
    for name in ("ivoid", "res_title", "waveband", "interfaces"):
        table.fields.append(tree.Field(doc, name=name, datatype="unicodeChar", arraysize="*"))
    table.create_arrays(len(rows))
    for index, (ivoid, title, interfaces) in enumerate(rows):
        aggregate = INTERFACE_SEPARATOR.join(FIELD_SEPARATOR.join(i) for i in interfaces)
        table.array[index] = (ivoid, title, "uv", aggregate)
    buffer = io.BytesIO()
    doc.to_xml(buffer)
    return buffer.getvalue()


ERROR_VOTABLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
  <RESOURCE type="results">
    <INFO name="QUERY_STATUS" value="ERROR">Illegal POS: 400 is not a right ascension</INFO>
  </RESOURCE>
</VOTABLE>
"""

HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>Service maintenance</title></head>
<body><h1>We are down for maintenance</h1></body></html>
"""

SESAME_M51 = b"""<?xml version="1.0" encoding="UTF-8"?>
<Sesame><Target><name>M51</name>
  <Resolver name="S=Simbad"><jradeg>202.4696292</jradeg><jdedeg>+47.1952583</jdedeg></Resolver>
</Target></Sesame>
"""

SESAME_NOTHING = b"""<?xml version="1.0" encoding="UTF-8"?>
<Sesame><Target><name>NoSuchThing</name>
  <Resolver><INFO>*** Nothing found ***</INFO></Resolver>
</Target></Sesame>
"""

M51 = (202.4696292, 47.1952583)


# --- 1. registry ---------------------------------------------------------------------------


async def test_regsearch_posts_regtap_adql_and_reads_the_resources_as_pyvo_does(server, client):
    data = pyvo_data(REGISTRY, "regtap.xml")

    async def sync(request: web.Request) -> web.Response:
        form = await request.post()
        query = str(form.get("QUERY", ""))
        if (
            form.get("REQUEST") != "doQuery"
            or form.get("LANG") != "ADQL"
            or "1=ivo_hashlist_has(waveband, 'uv')" not in query
        ):
            return web.Response(status=400, text="unexpected form")
        return votable_response(data)

    server.route("POST", "/reg/tap/sync", sync)
    resources = await client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])

    (hit,) = server.hits
    form = form_of(hit)
    assert form["REQUEST"] == ["doQuery"]
    assert form["LANG"] == ["ADQL"]
    query = form["QUERY"][0]
    assert "1=ivo_hashlist_has(waveband, 'uv')" in query
    assert "standard_id IN ('ivo://ivoa.net/std/sia')" in query
    assert "ivo_hasword(res_description, 'swift')" in query

    expected = [r.ivoid for r in PyvoRegistryResults(quiet_votable(data))]
    assert [r.ivoid for r in resources] == expected
    assert len(resources) == 30
    assert all(isinstance(r, RegistryResource) and r.client is client for r in resources)

    with pytest.raises(ParameterError):
        resources[0].service("scs")  # a kind without a service object
    with pytest.raises(NoServiceError):
        resources[0].service("sia")  # these are catalogues: no image service
    tap = resources[0].service("tap")
    assert isinstance(tap, TAPService)
    assert tap.access_url == resources[0].access_url("tap").rstrip("/")


async def test_a_registry_resource_with_sia_gives_a_working_sia_service(server, client):
    sia_url = server.url("/swift/sia?")
    interfaces = [
        ("ivo://ivoa.net/std/vosi#capabilities", "vs:ParamHTTP", "", "1.0", sia_url + "x", ""),
        ("ivo://ivoa.net/std/sia", "vs:ParamHTTP", "std", "1.0", sia_url, "Swift UVOT images"),
    ]
    server.route(
        "POST",
        "/reg/tap/sync",
        serve(registry_votable([("ivo://example/swift/uvot", "UVOT", interfaces)])),
    )
    seen: list[list[tuple[str, str]]] = []
    server.route("GET", "/swift/sia", serve(pyvo_data(DAL, "sia", "dataset.xml"), seen=seen))

    (resource,) = await client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])
    assert resource.access_url("sia") == sia_url
    service = resource.service("sia")
    assert isinstance(service, SIAService)
    assert service.access_url == resource.access_url("sia")
    with pytest.raises(NoServiceError):
        resource.service("sia2")

    results = await service.search(pos=(202.47, 47.19), size=0.2, format="image/jpeg")
    assert len(results) == 2
    assert seen == [[("POS", "202.47,47.19"), ("SIZE", "0.2"), ("FORMAT", "image/jpeg")]]


async def test_regsearch_falls_back_to_the_next_registry_at_once(server):
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="database down")

    server.route("POST", "/reg1/tap/sync", broken)
    server.route("POST", "/reg2/tap/sync", serve(pyvo_data(REGISTRY, "regtap.xml")))
    config = make_config(
        server,
        registries=(
            RegistryEndpoint(server.url("/reg1/tap")),
            RegistryEndpoint(server.url("/reg2/tap")),
        ),
    )
    async with VOClient(config) as client:
        resources = await client.regsearch(keywords=["pulsar"])

    # Each endpoint once, quickly, before any is retried: the second answers.
    assert len(requests(server, "POST", "/reg1/tap/sync")) == 1
    assert len(requests(server, "POST", "/reg2/tap/sync")) == 1
    assert [hit.path for hit in server.hits][-1] == "/reg2/tap/sync"
    assert "ivo://nasa.heasarc/pulsar" in [r.ivoid for r in resources]


async def test_a_registry_that_cant_run_a_constraint_is_never_asked(server):
    server.route("POST", "/reg2/tap/sync", serve(pyvo_data(REGISTRY, "regtap.xml")))
    config = make_config(
        server,
        registries=(
            RegistryEndpoint(server.url("/reg1/tap"), RegistryFeatures.minimal()),
            RegistryEndpoint(server.url("/reg2/tap"), RegistryFeatures()),
        ),
    )
    async with VOClient(config) as client:
        resources = await client.regsearch(servicetype="tap", spatial=(10, 20))

    assert len(resources) == 30
    assert [hit.path for hit in server.hits] == ["/reg2/tap/sync"]
    assert "rr.stc_spatial" in form_of(server.hits[0])["QUERY"][0]


async def test_when_every_registry_fails_the_error_names_each(server):
    server.route("POST", "/reg1/tap/sync", serve(HTML_PAGE, content_type="text/html"))
    server.route(
        "POST", "/reg2/tap/sync", serve(b"overloaded", status=503, content_type="text/plain")
    )
    config = make_config(
        server,
        registries=(
            RegistryEndpoint(server.url("/reg1/tap")),
            RegistryEndpoint(server.url("/reg2/tap")),
        ),
    )
    async with VOClient(config) as client:
        with pytest.raises(ServiceError) as caught:
            await client.regsearch(keywords=["pulsar"])

    text = str(caught.value)
    assert "2 tried" in text
    assert server.url("/reg1/tap") in text and server.url("/reg2/tap") in text and "503" in text
    assert len(requests(server, "POST", "/reg1/tap/sync")) == 1  # a format error isn't retried
    # The 503 may heal: once in the quick pass, then with the policy's attempts.
    assert len(requests(server, "POST", "/reg2/tap/sync")) == 1 + FAST_RETRY.attempts


async def test_when_no_registry_can_run_a_constraint_nothing_is_sent(server):
    config = make_config(
        server, registries=(RegistryEndpoint(server.url("/reg/tap"), RegistryFeatures.minimal()),)
    )
    async with VOClient(config) as client:
        with pytest.raises(UnsupportedConstraintError):
            await client.regsearch(spatial=(10, 20))
    assert server.hits == []


# --- 2. SIA v1 and Sesame ----------------------------------------------------------------


async def test_sia1_search_sends_pos_size_format_and_reads_the_records(server, client):
    data = pyvo_data(DAL, "sia", "dataset.xml")
    seen: list[list[tuple[str, str]]] = []
    server.route("GET", "/sia", serve(data, seen=seen))

    service = client.sia_service(server.url("/sia"))
    assert isinstance(service, SIAService)
    results = await service.search(pos=(202.47, 47.19), size=0.2, format="image/fits")

    assert seen == [[("POS", "202.47,47.19"), ("SIZE", "0.2"), ("FORMAT", "image/fits")]]
    assert results.version == 1
    recorded = [record.getdataurl() for record in PyvoSIAResults(quiet_votable(data))]
    assert [record.getdataurl() for record in results] == recorded
    assert recorded == ["http://example.com/querydata/image.fits"] * 2


async def test_sia1_format_preset_in_the_access_url_is_not_sent_twice(server, client):
    seen: list[list[tuple[str, str]]] = []
    server.route("GET", "/sdss/sia", serve(pyvo_data(DAL, "sia", "dataset.xml"), seen=seen))

    service = client.sia_service(server.url("/sdss/sia?FORMAT=image/fits&"))
    results = await service.search(pos=(202.47, 47.19), size=0.2, format="ALL")

    assert len(results) == 2
    (pairs,) = seen
    assert [value for name, value in pairs if name.upper() == "FORMAT"] == ["image/fits"]
    assert dict(pairs) == {"FORMAT": "image/fits", "POS": "202.47,47.19", "SIZE": "0.2"}


async def test_a_name_is_resolved_through_sesame_once_then_cached(server, client):
    seen: list[list[tuple[str, str]]] = []
    server.route("GET", "/sia", serve(pyvo_data(DAL, "sia", "dataset.xml"), seen=seen))
    server.route("GET", "/sesame", serve(SESAME_M51, content_type="text/xml"))

    service = client.sia_service(server.url("/sia"))
    first = await service.search(pos="M51", size=0.2, format="image/jpeg")
    second = await service.search(pos="M51", size=0.2, format="image/jpeg")
    position = await client.resolve("  m51 ")  # the cache ignores case and spacing

    (sesame,) = requests(server, "GET", "/sesame")
    assert sesame.query == {"M51": ""}
    assert len(first) == len(second) == 2
    assert len(seen) == 2
    for pairs in seen:
        values = dict(pairs)
        assert numbers(values["POS"], ",") == pytest.approx(M51, abs=1e-9)
        assert values["SIZE"] == "0.2"
    assert (position.ra.deg, position.dec.deg) == pytest.approx(M51, abs=1e-9)


async def test_an_unknown_name_is_a_name_resolution_error_and_no_search_is_sent(server):
    server.route("GET", "/sesame1", serve(SESAME_NOTHING, content_type="text/xml"))
    server.route("GET", "/sesame2", serve(SESAME_M51, content_type="text/xml"))
    config = make_config(server, sesame=(server.url("/sesame1"), server.url("/sesame2")))
    async with VOClient(config) as client:
        with pytest.raises(NameResolutionError, match="NoSuchThing"):
            await client.sia_service(server.url("/sia")).search(pos="NoSuchThing", size=0.2)
        # Asked again (a harvest asks once per service): answered from memory.
        with pytest.raises(NameResolutionError, match="NoSuchThing"):
            await client.resolve("  NoSuchThing ")

    # Sesame's "nothing found" is an answer, not a failure: no retry, no other mirror.
    assert [hit.path for hit in server.hits] == ["/sesame1"]


async def test_sesame_falls_back_to_the_next_mirror(server):
    server.route("GET", "/sesame1", serve(b"busy", status=503, content_type="text/plain"))
    server.route("GET", "/sesame2", serve(SESAME_M51, content_type="text/xml"))
    config = make_config(server, sesame=(server.url("/sesame1"), server.url("/sesame2")))
    async with VOClient(config) as client:
        position = await client.resolve("M51")

    assert (position.ra.deg, position.dec.deg) == pytest.approx(M51, abs=1e-9)
    assert len(requests(server, "GET", "/sesame1")) == FAST_RETRY.attempts
    assert len(requests(server, "GET", "/sesame2")) == 1


# --- 3. SIA v2 ---------------------------------------------------------------------------


async def test_sia2_search_sends_dali_parameters_and_reads_obscore_records(server, client):
    data = pyvo_data(DAL, "sia2", "dataset.xml")
    seen: list[list[tuple[str, str]]] = []
    server.route("GET", "/sia2/query", serve(data, seen=seen))

    service = client.sia_service(server.url("/sia2/query"), version=2)
    assert isinstance(service, SIA2Service)
    results = await service.search(
        pos=(202.47, 47.19, 0.1), band=(400 * u.nm, 700 * u.nm), calib=0, maxrec=0
    )

    (pairs,) = seen
    assert [name for name, _ in pairs] == ["POS", "BAND", "CALIB", "MAXREC"]
    values = dict(pairs)
    shape, *circle = values["POS"].split(" ")
    assert shape == "CIRCLE"
    assert [float(v) for v in circle] == pytest.approx([202.47, 47.19, 0.1])
    assert numbers(values["BAND"]) == pytest.approx([4e-7, 7e-7])
    assert values["CALIB"] == "0"
    assert values["MAXREC"] == "0"

    assert results.version == 2
    recorded = [record.access_url for record in PyvoSIA2Results(quiet_votable(data))]
    assert results.getdataurls() == recorded
    assert len(recorded) == 1 and recorded[0].startswith("https://example.com/datalink?")


# --- 4. errors from the service ------------------------------------------------------------


async def test_query_status_error_is_a_query_error_and_not_retried(server, client):
    server.route("GET", "/sia", serve(ERROR_VOTABLE))
    with pytest.raises(QueryError) as caught:
        await client.sia_service(server.url("/sia")).search(pos=(10, 20), size=0.1)
    assert caught.value.message == "Illegal POS: 400 is not a right ascension"
    assert len(server.hits) == 1


async def test_an_html_page_is_a_format_error(server, client):
    server.route("GET", "/sia", serve(HTML_PAGE, content_type="text/html"))
    with pytest.raises(FormatError) as caught:
        await client.sia_service(server.url("/sia")).search(pos=(10, 20), size=0.1)
    assert "maintenance" in caught.value.snippet
    assert len(server.hits) == 1


async def test_http_400_is_an_http_status_error_after_one_request(server, client):
    server.route("GET", "/sia", serve(b"POS is required", status=400, content_type="text/plain"))
    with pytest.raises(HTTPStatusError) as caught:
        await client.sia_service(server.url("/sia")).search(pos=(10, 20), size=0.1)
    assert caught.value.status == 400
    assert caught.value.attempts == 1
    assert "POS is required" in caught.value.body
    assert len(server.hits) == 1


# --- 5. TAP sync -------------------------------------------------------------------------


async def test_tap_run_sync_posts_the_query_and_returns_rows(server, client):
    data = pyvo_data(DAL, "tap", "obscore-image.xml")
    server.route("POST", "/tap/sync", serve(data))

    query = "SELECT TOP 10 * FROM ivoa.obscore WHERE dataproduct_type = 'image'"
    results = await client.tap_service(server.url("/tap/")).run_sync(query, maxrec=0)

    (hit,) = server.hits
    assert hit.path == "/tap/sync"
    assert form_of(hit) == {
        "REQUEST": ["doQuery"],
        "LANG": ["ADQL"],
        "QUERY": [query],
        "MAXREC": ["0"],
    }
    expected = quiet_votable(data).get_first_table().to_table()
    assert len(results) == len(expected) == 10
    assert results.column("obs_id") == [str(v) for v in expected["obs_id"]]


# --- 6. TAP async (UWS) --------------------------------------------------------------------


def uws_job(phase: str, *, result: str | None = None) -> bytes:
    results = f'<uws:result id="result" xlink:href="{result}"/>' if result else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0"
         xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1">
  <uws:jobId>job1</uws:jobId>
  <uws:phase>{phase}</uws:phase>
  <uws:results>{results}</uws:results>
</uws:job>
""".encode()


class UWSService:
    """One TAP job, ``job1``, whose poll answers are given in order (the last repeats)."""

    JOB = "/tap/async/job1"

    def __init__(
        self, server: LocalServer, documents: Sequence[bytes], *, abort_delay: float = 0.0
    ) -> None:
        self.server = server
        self.documents = list(documents)
        self.abort_delay = abort_delay
        self.polls = 0
        self.result = pyvo_data(DAL, "tap", "obscore-image.xml")
        server.route("POST", "/tap/async", self.create)
        server.route("GET", "/tap/async", self.job_list)
        server.route("GET", self.JOB, self.poll)
        server.route("POST", self.JOB + "/phase", self.phase)
        server.route("DELETE", self.JOB, self.delete)
        server.route("GET", self.JOB + "/results/result", serve(self.result))

    @staticmethod
    def see_other(location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location})

    async def create(self, request: web.Request) -> web.Response:
        return self.see_other(self.JOB)

    async def job_list(self, request: web.Request) -> web.Response:
        return web.Response(text="<uws:jobs/>", content_type="text/xml")

    async def poll(self, request: web.Request) -> web.Response:
        document = self.documents[min(self.polls, len(self.documents) - 1)]
        self.polls += 1
        return web.Response(body=document, content_type="text/xml")

    async def phase(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("PHASE") == "ABORT" and self.abort_delay:
            await asyncio.sleep(self.abort_delay)
        return self.see_other(self.JOB)

    async def delete(self, request: web.Request) -> web.Response:
        return self.see_other("/tap/async")

    def sequence(self) -> list[tuple[str, str]]:
        return [(hit.method, hit.path) for hit in self.server.hits]

    def phase_posts(self) -> list[str]:
        return [
            form_of(hit)["PHASE"][0] for hit in requests(self.server, "POST", self.JOB + "/phase")
        ]


async def test_run_async_creates_polls_fetches_and_deletes_without_following_the_redirect(
    server, client
):
    uws = UWSService(
        server,
        [
            uws_job("EXECUTING"),
            uws_job("EXECUTING"),
            uws_job("COMPLETED", result=server.url("/tap/async/job1/results/result")),
        ],
    )
    query = "SELECT * FROM ivoa.obscore"
    results = await client.tap_service(server.url("/tap")).run_async(query, maxrec=100, wait=1)

    assert len(results) == 10
    assert uws.sequence() == [
        ("POST", "/tap/async"),
        ("GET", "/tap/async/job1"),
        ("GET", "/tap/async/job1"),
        ("GET", "/tap/async/job1"),
        ("GET", "/tap/async/job1/results/result"),
        ("DELETE", "/tap/async/job1"),
    ]  # no GET /tap/async after the DELETE: its 303 was not followed
    create = form_of(server.hits[0])
    assert create["PHASE"] == ["RUN"]
    assert create["QUERY"] == [query]
    assert create["MAXREC"] == ["100"]
    polls = requests(server, "GET", uws.JOB)
    # A first look without WAIT (a PENDING job would block it), then long polls.
    assert [hit.query for hit in polls] == [{}, {"WAIT": "1"}, {"WAIT": "1"}]


async def test_a_job_left_pending_is_started_once(server, client):
    uws = UWSService(
        server,
        [uws_job("PENDING"), uws_job("COMPLETED", result="/tap/async/job1/results/result")],
    )
    results = await client.tap_service(server.url("/tap")).run_async("SELECT 1", wait=1)

    assert len(results) == 10  # a relative result href is taken relative to the job
    assert uws.phase_posts() == ["RUN"]
    # The job was started right after the first look, not after a whole WAIT.
    assert requests(server, "GET", uws.JOB)[0].query == {}
    assert uws.sequence()[-1] == ("DELETE", "/tap/async/job1")


async def test_a_job_in_error_raises_job_error_and_is_still_deleted(server, client):
    uws = UWSService(server, [pyvo_data(UWS, "job-error.xml")])
    with pytest.raises(JobError) as caught:
        await client.tap_service(server.url("/tap")).run_async("SELECT 1", wait=1)

    assert caught.value.message == "We have problem"
    assert caught.value.phase == "ERROR"
    assert caught.value.url == server.url("/tap/async/job1")
    assert uws.sequence() == [
        ("POST", "/tap/async"),
        ("GET", "/tap/async/job1"),
        ("DELETE", "/tap/async/job1"),
    ]


async def test_a_job_past_its_deadline_is_aborted_and_deleted(server, client):
    uws = UWSService(server, [uws_job("EXECUTING")])
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError, match="deadline"):
        await client.tap_service(server.url("/tap")).run_async("SELECT 1", deadline=0.5, wait=1)

    assert time.monotonic() - started < 3
    assert uws.phase_posts() == ["ABORT"]
    assert uws.sequence()[-2:] == [
        ("POST", "/tap/async/job1/phase"),
        ("DELETE", "/tap/async/job1"),
    ]


async def test_cancelling_run_async_still_aborts_and_deletes_the_job(server, client):
    uws = UWSService(server, [uws_job("EXECUTING")])
    task = asyncio.create_task(client.tap_service(server.url("/tap")).run_async("SELECT 1", wait=1))
    await eventually(lambda: uws.polls >= 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await eventually(lambda: ("DELETE", uws.JOB) in uws.sequence())
    assert uws.phase_posts() == ["ABORT"]
    assert uws.sequence()[-2:] == [("POST", uws.JOB + "/phase"), ("DELETE", uws.JOB)]


async def test_clean_up_cancelled_again_finishes_in_the_background_before_close(server):
    uws = UWSService(server, [uws_job("EXECUTING")], abort_delay=0.3)
    async with VOClient(make_config(server)) as client:
        task = asyncio.create_task(
            client.tap_service(server.url("/tap")).run_async("SELECT 1", wait=1)
        )
        await eventually(lambda: uws.polls >= 1)
        task.cancel()
        await eventually(lambda: uws.phase_posts() == ["ABORT"])
        task.cancel()  # impatient: cancelled again while the abort is on its way
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ("DELETE", uws.JOB) not in uws.sequence()
    # aclose() waited for the clean-up the cancelled task left behind
    assert uws.sequence()[-1] == ("DELETE", uws.JOB)


async def test_a_server_that_ignores_wait_is_polled_with_backoff(server, client):
    uws = UWSService(server, [uws_job("EXECUTING")])
    with pytest.raises(RequestTimeoutError):
        await client.tap_service(server.url("/tap")).run_async("SELECT 1", deadline=1.5, wait=1)
    polls = requests(server, "GET", uws.JOB)
    assert 2 <= len(polls) <= 10
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(polls)]
    assert gaps == sorted(gaps)  # waits grow
    assert uws.phase_posts() == ["ABORT"]


# --- 7. fetch and download ---------------------------------------------------------------


FITS = pyvo_data(DAL, "mimetype", "test.fits")


def cut_short(data: bytes, sent: int = 1000) -> Handler:
    """Announce all of ``data``, send ``sent`` bytes, then drop the connection."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/fits"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[:sent])
        assert request.transport is not None
        request.transport.close()
        return response

    return handler


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


async def test_fetch_returns_the_exact_bytes(server, client):
    server.route("GET", "/data/test.fits", serve(FITS, content_type="application/fits"))
    assert await client.fetch(server.url("/data/test.fits")) == FITS
    assert len(server.hits) == 1


async def test_download_writes_the_file_named_from_the_url(server, client, tmp_path):
    server.route("GET", "/data/test.fits", serve(FITS, content_type="application/fits"))
    path = await client.download(server.url("/data/test.fits"), tmp_path / "out")

    assert path == (tmp_path / "out" / "test.fits").resolve()
    assert path.read_bytes() == FITS
    assert files_under(tmp_path) == ["out", "out/test.fits"]


async def test_a_record_from_a_search_can_be_downloaded(server, client, tmp_path):
    recorded = pyvo_data(DAL, "sia", "dataset.xml")
    local = server.url("/querydata/image.fits").encode()
    data = recorded.replace(b"http://example.com/querydata/image.fits", local)
    assert data != recorded
    server.route("GET", "/sia", serve(data))
    server.route("GET", "/querydata/image.fits", serve(FITS, content_type="image/fits"))

    results = await client.sia_service(server.url("/sia")).search(pos=(202.47, 47.19), size=0.2)
    record = results[0]
    assert record.getdataurl() == local.decode()
    path = await client.download(record, tmp_path)

    assert path.name == "image.fits"
    assert path.read_bytes() == FITS
    assert await client.fetch(record) == FITS
    assert [hit.path for hit in server.hits] == ["/sia"] + ["/querydata/image.fits"] * 2


async def test_a_body_cut_short_fails_after_retries_and_leaves_nothing(server, client, tmp_path):
    server.route("GET", "/data/test.fits", cut_short(FITS))
    out = tmp_path / "out"
    with pytest.raises((PayloadError, ConnectError)) as caught:
        await client.download(server.url("/data/test.fits"), out)

    assert caught.value.attempts == FAST_RETRY.attempts
    assert len(server.hits) == FAST_RETRY.attempts
    assert files_under(tmp_path) == ["out"]  # no file, no .part


async def test_a_body_cut_short_once_is_downloaded_whole_on_retry(server, client, tmp_path):
    short = cut_short(FITS)
    whole = serve(FITS, content_type="application/fits")
    calls = 0

    async def flaky(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return await (short if calls == 1 else whole)(request)

    server.route("GET", "/data/test.fits", flaky)
    path = await client.download(server.url("/data/test.fits"), tmp_path)

    assert len(server.hits) == 2
    assert path.read_bytes() == FITS
    assert files_under(tmp_path) == ["test.fits"]


async def test_hostile_names_never_leave_the_directory(server, client, tmp_path):
    payload = os.urandom(4096)
    # The server decodes the %2F: this is the path it sees.
    server.route("GET", "/x/../../evil.fits", serve(payload, content_type="image/fits"))
    server.route("GET", "/x/data.fits", serve(payload, content_type="image/fits"))
    out = tmp_path / "deep" / "out"

    first = await client.download(server.url("/x/..%2F..%2Fevil.fits"), out)
    second = await client.download(server.url("/x/data.fits"), out, filename="../../evil")
    third = await client.download(server.url("/x/data.fits"), out, filename="..")

    assert len(server.hits) == 3
    for path in (first, second, third):
        assert path.parent == out.resolve()
        assert path.read_bytes() == payload
    assert files_under(tmp_path) == sorted(
        ["deep", "deep/out"] + [f"deep/out/{p.name}" for p in (first, second, third)]
    )


# --- 8. client lifetime ------------------------------------------------------------------


async def test_a_client_must_be_opened_before_use(server):
    client = VOClient(make_config(server))
    with pytest.raises(ClientStateError, match="async with"):
        await client.fetch(server.url("/data"))
    with pytest.raises(ClientStateError):
        await client.regsearch(keywords=["x"])
    with pytest.raises(ClientStateError):
        await client.tap_service(server.url("/tap")).run_sync("SELECT 1")
    await client.aclose()
    assert server.hits == []


async def test_a_closed_client_cant_be_reopened_or_used(server):
    server.route("GET", "/data", serve(b"x", content_type="text/plain"))
    client = VOClient(make_config(server))
    async with client:
        assert await client.fetch(server.url("/data")) == b"x"
    with pytest.raises(ClientStateError):
        await client.__aenter__()
    with pytest.raises(ClientStateError, match="closed"):
        await client.fetch(server.url("/data"))
    assert len(server.hits) == 1


async def test_an_injected_session_stays_open_and_requests_carry_our_user_agent(server):
    payload = os.urandom(1000)
    server.route("GET", "/data", serve(payload, content_type="application/octet-stream"))
    async with aiohttp.ClientSession() as session:
        async with VOClient(make_config(server), session=session) as client:
            assert await client.fetch(server.url("/data")) == payload
        assert not session.closed
        async with session.get(server.url("/data")) as response:
            assert await response.read() == payload

    agent = server.hits[0].headers["User-Agent"]
    assert agent.startswith("voharvest/")
    assert agent.endswith("(IVOA-science)")


async def test_concurrent_asks_for_one_name_share_one_request(server):
    async def slow_sesame(request):
        await asyncio.sleep(0.1)
        return web.Response(body=SESAME_M51, content_type="text/xml")

    server.route("GET", "/sesame1", slow_sesame)
    config = make_config(server, sesame=(server.url("/sesame1"),))
    async with VOClient(config) as client:
        positions = await asyncio.gather(*(client.resolve(n) for n in ("M51", "m51", " M51 ")))
    assert len(requests(server, "GET", "/sesame1")) == 1
    assert all(p.ra.deg == pytest.approx(M51[0]) for p in positions)
