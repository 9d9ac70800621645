"""VOClient.discover against a small local VO: batching, the fallback found once
per service, coverage and provenance, every request seen by the server."""

from __future__ import annotations

import asyncio
import email
import io
import json
import os
import re
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from html import escape
from pathlib import Path

import pytest
from aiohttp import web
from astropy.io.votable import parse_single_table

from tests.servers import LocalServer, votable_response
from voharvest import ClientConfig, RegistryEndpoint, RegistryFeatures, RetryPolicy, VOClient
from voharvest._discovery import DiscoveryOptions

SEP, INTF = "|vh|", "|vh-intf|"
TARGETS = [(10.0, 10.0), (10.5, 10.0), (200.0, -30.0)]
# Covers the first two targets only (the base cell of RA 10, Dec 10).
NORTH = "0/4"


def table(fields: list[tuple[str, str]], rows: list[list[object]], status: str = "OK") -> bytes:
    sizes = {"char": ' arraysize="*"'}
    heads = "".join(f'<FIELD name="{n}" datatype="{t}"{sizes.get(t, "")}/>' for n, t in fields)
    body = "".join(
        "<TR>" + "".join(f"<TD>{escape(str(v))}</TD>" for v in row) + "</TR>" for row in rows
    )
    return (
        '<?xml version="1.0"?><VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        f'<RESOURCE type="results"><INFO name="QUERY_STATUS" value="{status}"/>'
        f"<TABLE>{heads}<DATA><TABLEDATA>{body}</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
    ).encode()


def error(message: str) -> web.Response:
    text = (
        '<?xml version="1.0"?><VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        f'<RESOURCE type="results"><INFO name="QUERY_STATUS" value="ERROR">{message}</INFO>'
        "</RESOURCE></VOTABLE>"
    )
    return votable_response(text.encode(), status=400)


IMAGE_FIELDS = [
    ("access_url", "char"),
    ("access_format", "char"),
    ("obs_publisher_did", "char"),
    ("s_ra", "double"),
    ("s_dec", "double"),
    ("s_fov", "double"),
    ("dataproduct_type", "char"),
]


def image(ra: float, dec: float) -> list[object]:
    return [f"http://data.test/{ra:g}_{dec:g}.fits", "image/fits", f"ivo://x/{ra:g}_{dec:g}", ra,
            dec, 0.2, "image"]  # fmt: skip


class LittleVO:
    """A registry, an ObsCore TAP service, an SIA 2.0 and an SIA 1.0 service."""

    def __init__(self, server: LocalServer, *, batches: bool) -> None:
        self.server = server
        self.batches = batches
        #: SIA 1.0 searches at this RA never answer (until it is set to None).
        self.hang_at: float | None = None
        for method, path, handler in (
            ("POST", "/reg/tap/sync", self.registry),
            ("POST", "/obs/tap/sync", self.obscore),
            ("GET", "/sia2", self.sia2),
            ("GET", "/sia1", self.sia1),
        ):
            server.route(method, path, handler)

    def interfaces(self) -> dict[str, str]:
        def one(standard_id: str, path: str) -> str:
            return SEP.join([standard_id, "vs:paramhttp", "std", "", self.server.url(path), ""])

        return {
            "ivo://x/obscore": one("ivo://ivoa.net/std/tap#aux", "/obs/tap"),
            "ivo://x/sia2": one("ivo://ivoa.net/std/sia#query-2.0", "/sia2"),
            "ivo://x/sia1": one("ivo://ivoa.net/std/sia", "/sia1?"),
            "ivo://x/north": one("ivo://ivoa.net/std/sia", "/sia1?north=1&"),
        }

    async def registry(self, request: web.Request) -> web.Response:
        query = (await request.post())["QUERY"]
        assert isinstance(query, str)
        if "rr.stc_spatial" in query:
            rows = [[i, "0/0-11"] for i in ("ivo://x/obscore", "ivo://x/sia2", "ivo://x/sia1")]
            rows.append(["ivo://x/north", NORTH])
            return votable_response(table([("ivoid", "char"), ("coverage", "char")], rows))
        if "rr.relationship" in query:
            return votable_response(table([("ivoid", "char"), ("related_id", "char")], []))
        fields = [(n, "char") for n in ("ivoid", "res_type", "res_title", "short_name")]
        rows = [
            [ivoid, "vs:catalogresource", ivoid, "x", text]
            for ivoid, text in self.interfaces().items()
        ]
        return votable_response(table([*fields, ("interfaces", "char")], rows))

    async def obscore(self, request: web.Request) -> web.Response:
        if request.content_type == "multipart/form-data":
            if not self.batches:
                return error("uploads are not supported here")
            head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
            message = email.message_from_bytes(head + await request.read())
            form = {p.get_param("name", header="content-disposition"): p for p in message.walk()}
            upload = form["targets"].get_payload(decode=True)
            assert isinstance(upload, bytes)
            targets = parse_single_table(io.BytesIO(upload)).to_table()
            assert "TAP_UPLOAD.targets" in str(form["QUERY"].get_payload())
            assert form["UPLOAD"].get_payload() == "targets,param:targets"
            rows = [[int(t["id"]), *image(float(t["ra"]), float(t["dec"]))] for t in targets]
            return votable_response(table([("vh_target", "long"), *IMAGE_FIELDS], rows))
        query = str((await request.post())["QUERY"])
        found = re.search(r"CIRCLE\('ICRS', ([-\d.]+), ([-\d.]+), ", query)
        assert found is not None
        ra, dec = float(found.group(1)), float(found.group(2))
        return votable_response(table(IMAGE_FIELDS, [image(ra, dec)]))

    async def sia2(self, request: web.Request) -> web.Response:
        circles = request.query.getall("POS")
        if len(circles) > 1 and not self.batches:
            return error("POS may be given once")
        rows = []
        for circle in circles:
            _, ra, dec, _ = circle.split()
            rows.append(image(float(ra), float(dec)))
        return votable_response(table(IMAGE_FIELDS, rows))

    async def sia1(self, request: web.Request) -> web.Response:
        ra, dec = (float(v) for v in request.query["POS"].split(","))
        if ra == self.hang_at and "north" not in request.query:
            await asyncio.sleep(3600)
        fields = [
            '<FIELD name="url" datatype="char" arraysize="*" ucd="VOX:Image_AccessReference"/>',
            '<FIELD name="fmt" datatype="char" arraysize="*" ucd="VOX:Image_Format"/>',
        ]
        url = f"http://data.test/sia1/{ra:g}_{dec:g}.fits"
        text = (
            '<?xml version="1.0"?><VOTABLE version="1.1"><RESOURCE type="results">'
            '<INFO name="QUERY_STATUS" value="OK"/><TABLE>' + "".join(fields) + "<DATA><TABLEDATA>"
            f"<TR><TD>{url}</TD><TD>image/fits</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE>"
            "</VOTABLE>"
        )
        return votable_response(text.encode())


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[VOClient]:
    config = ClientConfig(
        registries=(RegistryEndpoint(server.url("/reg/tap")),),
        retry=RetryPolicy(attempts=1),
    )
    async with VOClient(config) as opened:
        yield opened


def paths(server: LocalServer, path: str) -> int:
    return len(server.hits_for(path))


async def test_batches_one_upload_and_one_multi_pos_request(
    server: LocalServer, client: VOClient
) -> None:
    LittleVO(server, batches=True)
    result = await client.discover(TARGETS, size=0.1)
    obscore = result.service("ivo://x/obscore")
    sia2 = result.service("ivo://x/sia2")
    assert (obscore.mode, obscore.requests, obscore.queried) == ("upload", 1, 3)
    assert (sia2.mode, sia2.requests, sia2.queried) == ("multi-pos", 1, 3)
    assert paths(server, "/obs/tap/sync") == 1 and paths(server, "/sia2") == 1
    assert server.hits_for("/sia2")[0].query["POS"].startswith("CIRCLE ")
    # SIA 1.0: one request per target; the northern service only for the two it covers.
    north = result.service("ivo://x/north")
    assert (north.requests, north.queried, north.skipped) == (2, 2, 1)
    assert result.service("ivo://x/sia1").requests == 3
    assert paths(server, "/sia1") == 5
    # ObsCore and SIA 2.0 found the same three images: one dataset each, two
    # origins; both SIA 1.0 services the same two in the north.
    assert len(result.datasets) == 3 + 3
    for dataset in result.datasets:
        if "sia1" not in dataset.access_url:
            assert dataset.services == [("ivo://x/obscore", "obscore"), ("ivo://x/sia2", "sia2")]
        elif dataset.targets == [2]:
            assert dataset.services == [("ivo://x/sia1", "sia")]
        else:
            assert dataset.services == [("ivo://x/north", "sia"), ("ivo://x/sia1", "sia")]
    assert result.registry_requests == 3
    assert result.requests == 3 + 1 + 1 + 5


async def test_a_service_that_refuses_batches_is_asked_per_target_from_then_on(
    server: LocalServer, client: VOClient
) -> None:
    LittleVO(server, batches=False)
    options = DiscoveryOptions(batch_pos=2, batch_upload=2)
    result = await client.discover(TARGETS, size=0.1, options=options)
    obscore = result.service("ivo://x/obscore")
    sia2 = result.service("ivo://x/sia2")
    # One refused batch, then one request per target; the second batch is never tried.
    assert (obscore.mode, obscore.requests, obscore.queried, obscore.failed) == ("single", 4, 3, 0)
    assert (sia2.mode, sia2.requests, sia2.queried, sia2.failed) == ("single", 4, 3, 0)
    multipart = [
        h for h in server.hits_for("/obs/tap/sync") if "multipart" in h.headers["Content-Type"]
    ]
    assert len(multipart) == 1
    assert [len(h.query) for h in server.hits_for("/sia2")].count(1) == 4
    assert sum(1 for d in result.datasets if "sia1" not in d.access_url) == 3
    assert result.service("ivo://x/sia2").status == "queried"


async def test_an_upload_of_one_target_refused_is_asked_again_without(
    server: LocalServer, client: VOClient
) -> None:
    LittleVO(server, batches=False)
    result = await client.discover([TARGETS[0]], size=0.1)
    obscore = result.service("ivo://x/obscore")
    assert (obscore.mode, obscore.requests, obscore.queried, obscore.failed) == ("single", 2, 1, 0)
    assert result.service("ivo://x/sia2").requests == 1  # one POS: nothing to refuse


async def test_nothing_is_asked_outside_the_coverage(server: LocalServer, client: VOClient) -> None:
    LittleVO(server, batches=True)
    result = await client.discover([(200.0, -30.0)], size=0.1)
    north = result.service("ivo://x/north")
    assert (north.status, north.requests, north.skipped) == ("skipped", 0, 1)
    assert not [h for h in server.hits_for("/sia1") if "north" in h.query]


async def test_bad_input_is_refused(client: VOClient) -> None:
    with pytest.raises(ValueError, match="size"):
        await client.discover([(1.0, 2.0)], size=20)
    with pytest.raises(ValueError, match="no target"):
        await client.discover([], size=0.1)
    with pytest.raises(ValueError, match="batch_pos"):
        DiscoveryOptions(batch_pos=0)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from voharvest import ClientConfig, RegistryEndpoint, RetryPolicy, VOClient

    async def main(registry, journal):
        config = ClientConfig(
            registries=(RegistryEndpoint(registry),), retry=RetryPolicy(attempts=1)
        )
        async with VOClient(config) as client:
            await client.discover(%r, size=0.1, journal=journal)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
) % (TARGETS,)


def journaled(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


async def test_a_killed_discovery_run_again_repeats_no_answered_request(
    server: LocalServer, client: VOClient, tmp_path: Path
) -> None:
    vo = LittleVO(server, batches=True)
    vo.hang_at = TARGETS[2][0]  # the SIA 1.0 service's search at the third target
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    journal = tmp_path / "discovery.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), server.url("/reg/tap"), str(journal), env=env
    )
    try:
        # 3 registry answers, 1 upload, 1 multi-POS, 2 + 2 SIA 1.0: all but the hung one.
        for _ in range(600):
            if journaled(journal) == 9:
                break
            await asyncio.sleep(0.05)
        assert journaled(journal) == 9
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    before = len(server.hits)
    vo.hang_at = None

    result = await client.discover(TARGETS, size=0.1, journal=journal)
    again = server.hits[before:]
    assert [(h.path, h.query.get("POS")) for h in again] == [("/sia1", "200.0,-30.0")]
    assert (result.requests, result.replayed) == (1, 9)
    assert len(result.datasets) == 6
    assert result.service("ivo://x/sia1").queried == 3
    with sqlite3.connect(journal) as db:
        (kept,) = db.execute("SELECT value FROM notes WHERE key = 'report'").fetchone()
    report = json.loads(kept)
    assert (report["datasets"], report["requests"], report["replayed"]) == (6, 1, 9)
    sia1 = next(s for s in report["services"] if s["ivoid"] == "ivo://x/sia1")
    assert (sia1["status"], sia1["requests"], sia1["replayed"]) == ("queried", 1, 2)


async def test_a_registry_without_coverage_tables(server: LocalServer) -> None:
    """No rr.stc_spatial: no coverage query; inclusive asks everyone, else no one."""
    LittleVO(server, batches=True)
    config = ClientConfig(
        registries=(RegistryEndpoint(server.url("/reg/tap"), RegistryFeatures.minimal()),),
        retry=RetryPolicy(attempts=1),
    )
    async with VOClient(config) as client:
        strict = await client.discover(TARGETS, size=0.1)
        assert strict.registry_requests == 2
        assert {s.status for s in strict.services} == {"skipped"}
        assert strict.datasets == ()
        loose = await client.discover(TARGETS, size=0.1, inclusive=True)
    assert loose.service("ivo://x/north").queried == 3  # no coverage: asked everywhere
    queries = [h.body for h in server.hits_for("/reg/tap/sync")]
    assert not [q for q in queries if b"stc_spatial" in q]
