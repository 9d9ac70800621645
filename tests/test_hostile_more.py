"""Hostile input the other test files leave out, end to end through the client.

Each case is a real request to a local server that misbehaves on purpose: the
client must raise a clear, typed error (or ignore what it was told), fetch
nothing it wasn't asked to fetch, and write nothing outside the directory it
was given. What is already covered elsewhere is listed in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import (
    ClientConfig,
    FormatError,
    HostPolicy,
    NameResolutionError,
    ParameterError,
    PayloadError,
    RedirectError,
    RegistryEndpoint,
    RetryPolicy,
    Timeouts,
    TooLargeError,
    VOClient,
    VOHarvestError,
    harvest,
)
from voharvest.cli import main as cli_main

FITS = b"SIMPLE  =                    T".ljust(2880, b" ") + bytes(2880)
JPEG = b"\xff\xd8\xff\xe0" + bytes(100)

SIA_TABLE = b"""<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/><TABLE>
<FIELD name="url" datatype="char" arraysize="*" ucd="VOX:Image_AccessReference"/>
<FIELD name="fmt" datatype="char" arraysize="*" ucd="VOX:Image_Format"/>
<DATA><TABLEDATA><TR><TD>http://127.0.0.1:9/a.fits</TD><TD>image/fits</TD></TR></TABLEDATA>
</DATA></TABLE></RESOURCE></VOTABLE>
"""


def config(server: LocalServer, **changes: object) -> ClientConfig:
    values: dict[str, object] = {
        "registries": (RegistryEndpoint(server.url("/reg/tap")),),
        "sesame": (server.url("/sesame"),),
        "retry": RetryPolicy(attempts=2, initial=0.01, maximum=0.02, jitter=0.0),
        "host": HostPolicy(rate=math.inf, concurrency=8),
        "timeouts": Timeouts(connect=5, read=5, total=10),
    }
    values.update(changes)
    return ClientConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[VOClient]:
    async with VOClient(config(server)) as opened:
        yield opened


def answer(body: bytes, content_type: str = "application/x-votable+xml", **headers: str):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, headers=headers)

    return handler


def everything_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*"))


# --- XML: DTDs and entities in every XML the client reads ----------------------------------

# Each would make a naive parser fetch or read something: the DTD server below
# counts the fetches, and none may arrive. A DOCTYPE that only names an external
# DTD is read without it (VOTable 1.0/1.1 services send one); an internal subset
# is refused, and so is what is not well-formed XML.
DOCTYPES = {
    "external DTD": ('<!DOCTYPE VOTABLE SYSTEM "{dtd}">', True),
    "public DTD": ('<!DOCTYPE VOTABLE PUBLIC "-//IVOA//DTD VOTable//EN" "{dtd}">', True),
    "lower-case doctype": ('<!doctype votable SYSTEM "{dtd}">', False),
    "another root name": ('<!DOCTYPE foo SYSTEM "{dtd}">', True),
    "parameter entity": ('<!DOCTYPE VOTABLE [<!ENTITY % remote SYSTEM "{dtd}"> %remote;]>', False),
    "after a BOM and a comment": ('\ufeff<!-- hi --><!DOCTYPE VOTABLE SYSTEM "{dtd}">', True),
}


@pytest.mark.parametrize("doctype,readable", list(DOCTYPES.values()), ids=list(DOCTYPES))
async def test_a_search_answer_with_a_dtd_never_makes_it_fetched(
    server: LocalServer, client: VOClient, doctype: str, readable: bool
):
    server.route("GET", "/dtd/*", answer(b"<!ENTITY x 'y'>", "application/xml-dtd"))
    prolog = doctype.format(dtd=server.url("/dtd/votable.dtd"))
    server.route("GET", "/sia", answer(prolog.encode() + SIA_TABLE))
    search = client.sia_service(server.url("/sia")).search((10.0, 20.0), 0.1)
    if readable:
        assert len(await search) == 1
    else:
        with pytest.raises(FormatError):
            await search
    assert server.hits_for("/dtd/votable.dtd") == []


async def test_a_stylesheet_instruction_is_not_followed(server: LocalServer, client: VOClient):
    server.route("GET", "/xsl/*", answer(b"<xsl/>", "text/xsl"))
    pi = f'<?xml-stylesheet type="text/xsl" href="{server.url("/xsl/evil.xsl")}"?>'
    server.route("GET", "/sia", answer(pi.encode() + SIA_TABLE))
    results = await client.sia_service(server.url("/sia")).search((10.0, 20.0), 0.1)
    assert len(results) == 1
    assert server.hits_for("/xsl/evil.xsl") == []


async def test_a_registry_answer_with_entities_is_refused(server: LocalServer, client: VOClient):
    laughs = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    body = f"<!DOCTYPE VOTABLE [{laughs}]>".encode() + SIA_TABLE.replace(b"127.0.0.1", b"&l9;")
    server.route("POST", "/reg/tap/sync", answer(body))
    started = time.perf_counter()
    with pytest.raises(FormatError, match="document type"):
        await client.regsearch(servicetype="sia")
    assert time.perf_counter() - started < 2.0


def sesame(inner: str, doctype: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>{doctype}<Sesame><Target><name>M51</name>'
        f"<Resolver>{inner}</Resolver></Target></Sesame>"
    ).encode()


async def test_sesame_entities_are_never_expanded_nor_files_read(
    server: LocalServer, client: VOClient, tmp_path: Path
):
    # A file whose contents would be a perfectly good position if it were read.
    secret = tmp_path / "coordinates.txt"
    secret.write_text("12.5")
    attacks = {
        "file": sesame(
            "<jradeg>&ra;</jradeg><jdedeg>&ra;</jdedeg>",
            f'<!DOCTYPE Sesame [<!ENTITY ra SYSTEM "{secret.as_uri()}">]>',
        ),
        "dtd": sesame(
            "<jradeg>&ra;</jradeg><jdedeg>1</jdedeg>",
            f'<!DOCTYPE Sesame SYSTEM "{server.url("/dtd/sesame.dtd")}">',
        ),
        "laughs": sesame(
            "<jradeg>&l9;</jradeg><jdedeg>1</jdedeg>",
            '<!DOCTYPE Sesame [<!ENTITY l0 "1">'
            + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
            + "]>",
        ),
    }
    server.route("GET", "/dtd/*", answer(b'<!ENTITY ra "12.5">', "application/xml-dtd"))
    for name, body in attacks.items():
        server.route("GET", "/sesame", answer(body, "text/xml"))
        started = time.perf_counter()
        with pytest.raises((NameResolutionError, FormatError)) as caught:
            await client.resolve(f"target {name}")
        assert time.perf_counter() - started < 2.0, name
        assert "12.5" not in str(caught.value), name
    assert server.hits_for("/dtd/sesame.dtd") == []


async def test_a_name_with_control_characters_is_refused_unsent(
    server: LocalServer, client: VOClient
):
    with pytest.raises(ParameterError, match="control"):
        await client.resolve("M51\r\nHost: evil")
    assert server.hits == []


# --- size: a download that inflates far past what was announced ----------------------------


async def test_a_gzip_bomb_download_writes_no_more_than_announced(
    server: LocalServer, tmp_path: Path
):
    inflated = 64 * 1024 * 1024
    bomb = gzip.compress(FITS + bytes(inflated), compresslevel=9)
    assert len(bomb) < inflated // 500

    async def serve(request: web.Request) -> web.Response:
        # Asked for identity, answers gzip anyway.
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "image/fits"}
        )

    server.route("GET", "/bomb.fits", serve)
    out = tmp_path / "out"
    async with VOClient(config(server, retry=RetryPolicy(attempts=1))) as client:
        with pytest.raises(VOHarvestError):
            await client.download(server.url("/bomb.fits"), out, keep_partial=True)
        read = sum(stats.bytes for stats in client.stats.values())
    assert (out / "bomb.fits").exists() is False
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert written <= len(bomb) + 1024 * 1024
    assert read <= len(bomb) + 1024 * 1024


async def test_an_endless_search_answer_stops_at_the_cap(server: LocalServer):
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-votable+xml"})
        await response.prepare(request)
        await response.write(SIA_TABLE[:200])
        for _ in range(10_000):
            await response.write(b"<!-- more -->" * 1000)
        return response

    server.route("GET", "/sia", endless)
    async with VOClient(config(server, max_answer_bytes=200_000)) as client:
        with pytest.raises(TooLargeError):
            await client.sia_service(server.url("/sia")).search((10.0, 20.0), 0.1)
        read = sum(stats.bytes for stats in client.stats.values())
    assert read <= 200_000 + 256 * 1024


# --- redirects on downloads ----------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/a.fits", "/loop.fits", "data:,x"]
)
async def test_a_download_redirected_away_or_in_a_loop_writes_nothing(
    server: LocalServer, tmp_path: Path, target: str
):
    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    server.route("GET", "/loop.fits", away)
    out = tmp_path / "out"
    async with VOClient(config(server, max_redirects=5)) as client:
        with pytest.raises(RedirectError):
            await client.download(server.url("/loop.fits"), out, keep_partial=True)
    assert [p for p in everything_under(tmp_path) if p.is_file()] == []
    assert len(server.hits_for("/loop.fits")) <= 5  # no retry of a redirect error


# --- names: what a server says a file is called ----------------------------------------------

DISPOSITIONS = [
    'attachment; filename="../../escape.fits"',
    'attachment; filename="/etc/cron.d/evil"',
    "attachment; filename*=UTF-8''..%2F..%2Fescape.fits",
    'inline; filename="C:\\Windows\\evil.fits"',
    'attachment; filename="CON"',
]


@pytest.mark.parametrize("disposition", DISPOSITIONS)
async def test_content_disposition_never_names_the_file(
    server: LocalServer, client: VOClient, tmp_path: Path, disposition: str
):
    headers = {"Content-Disposition": disposition}
    server.route("GET", "/files/good.fits", answer(FITS, "image/fits", **headers))
    out = tmp_path / "out"
    path = await client.download(server.url("/files/good.fits"), out)
    assert path == (out / "good.fits").resolve()
    assert path.read_bytes() == FITS
    assert everything_under(tmp_path) == [out, out / "good.fits"]


URL_NAMES = [
    "/x/%2Fetc%2Fpasswd",
    "/x/..%5C..%5Cwindows.fits",
    "/x/CON.fits",
    "/x/nul",
    "/x/" + "a" * 400 + ".fits",
    "/x/%00hidden.fits",
    "/x/.bashrc",
]


@pytest.mark.parametrize("path", URL_NAMES, ids=["abs", "backslash", "con", "nul", "long",
                                                 "nul-byte", "dotfile"])  # fmt: skip
async def test_names_from_hostile_urls_stay_short_safe_and_inside(
    server: LocalServer, client: VOClient, tmp_path: Path, path: str
):
    server.route("GET", "/x/*", answer(FITS, "image/fits"))
    out = tmp_path / "out"
    saved = await client.download(server.url(path), out)
    assert saved.parent == out.resolve()
    assert len(saved.name) <= 120
    assert not saved.name.startswith(".")
    assert saved.name.split(".")[0].upper() not in {"CON", "NUL", "PRN", "AUX"}
    assert everything_under(tmp_path) == [out, saved]


# --- queries: numbers that are not positions or sizes ------------------------------------------

BAD_POSITIONS = [(math.nan, 10.0), (10.0, math.nan), (math.inf, 10.0), (10.0, 95.0), (1.0, -91.0)]


@pytest.mark.parametrize("pos", BAD_POSITIONS, ids=["nan-ra", "nan-dec", "inf", "dec-95", "dec-91"])
async def test_bad_positions_are_refused_before_any_request(
    server: LocalServer, client: VOClient, pos: tuple[float, float]
):
    with pytest.raises(ParameterError):
        await client.sia_service(server.url("/sia")).search(pos, 0.1)
    with pytest.raises(ParameterError):
        await client.sia_service(server.url("/sia2"), version=2).search(pos=(*pos, 0.1))
    assert server.hits == []


@pytest.mark.parametrize("size", [math.nan, math.inf, -0.1, 0.0, 181.0])
async def test_bad_harvest_sizes_are_refused_before_anything(
    server: LocalServer, client: VOClient, tmp_path: Path, size: float
):
    with pytest.raises(ParameterError):
        harvest(client, [server.url("/sia")], [(10.0, 20.0)], size=size, download_to=tmp_path / "o")
    assert server.hits == [] and everything_under(tmp_path) == []


@pytest.mark.parametrize("pos", BAD_POSITIONS, ids=["nan-ra", "nan-dec", "inf", "dec-95", "dec-91"])
async def test_bad_harvest_targets_are_typed_errors_and_sent_nowhere(
    server: LocalServer, client: VOClient, tmp_path: Path, pos: tuple[float, float]
):
    out = tmp_path / "out"
    with pytest.raises(ParameterError):
        await harvest(client, [server.url("/sia")], [pos], download_to=out).run()
    assert server.hits == []
    assert all(p.is_relative_to(out) for p in everything_under(tmp_path) if p != out)


@pytest.mark.parametrize(
    "args",
    [
        ["--target", "1e999 10", "--size", "0.1"],
        ["--target", "10 95", "--size", "0.1"],
        ["--target", "10 20", "--size", "nan"],
        ["--target", "10 20", "--size", "inf"],
        ["--target", "10 20", "--size", "-1"],
    ],
    ids=["inf-ra", "dec-95", "nan-size", "inf-size", "negative-size"],
)
async def test_the_cli_refuses_bad_numbers_with_exit_2(
    server: LocalServer, tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    argv = ["harvest", "--service", server.url("/sia"), *args, "--out", str(out), "--no-progress"]
    code = await asyncio.to_thread(cli_main, argv)
    assert code == 2
    assert "voharvest: error:" in capsys.readouterr().err
    assert server.hits == []
    assert all(p.is_relative_to(out) for p in everything_under(tmp_path) if p != out)


# --- content: bytes that are not what they claim -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"error": "not here"}', "application/x-votable+xml"),
        (b"\xef\xbb\xbf<html><body>Service down</body></html>", "text/xml"),
        (SIA_TABLE.replace(b"image/fits", b"image/\xff\xfe\xfa"), "application/x-votable+xml"),
        (SIA_TABLE.decode().encode("utf-16"), "application/x-votable+xml"),
    ],
    ids=["json", "html-as-xml", "bad-utf8", "utf16-undeclared"],
)
async def test_answers_that_are_not_readable_votables_are_format_errors(
    server: LocalServer, client: VOClient, body: bytes, content_type: str
):
    server.route("GET", "/sia", answer(body, content_type))
    with pytest.raises(FormatError):
        await client.sia_service(server.url("/sia")).search((10.0, 20.0), 0.1)
    assert len(server.hits_for("/sia")) == 1  # an answer, not an accident: not retried


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (JPEG, "image/fits", "image/fits"),
        (b"<html>quota exceeded</html>", "image/jpeg", "image/jpeg"),
        (FITS, "image/png", "image/png"),
    ],
    ids=["jpeg-as-fits", "html-as-jpeg", "fits-as-png"],
)
async def test_a_file_that_is_not_what_the_record_says_is_not_saved(
    server: LocalServer,
    client: VOClient,
    tmp_path: Path,
    body: bytes,
    content_type: str,
    expected: str,
):
    server.route("GET", "/files/thing", answer(body, content_type))
    out = tmp_path / "out"
    with pytest.raises(FormatError):
        await client.download(server.url("/files/thing"), out, expected_format=expected)
    assert [p for p in everything_under(tmp_path) if p.is_file()] == []


async def test_a_right_file_with_a_wrong_content_type_is_kept(
    server: LocalServer, client: VOClient, tmp_path: Path
):
    # The bytes decide, not the header: archives label FITS as text/plain or octet-stream.
    server.route("GET", "/files/a.fits", answer(FITS, "text/html"))
    path = await client.download(
        server.url("/files/a.fits"), tmp_path, expected_format="image/fits"
    )
    assert path.read_bytes() == FITS


async def test_a_truncated_body_is_never_a_final_file_even_kept(
    server: LocalServer, tmp_path: Path
):
    async def short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/fits"})
        response.content_length = len(FITS) * 4
        await response.prepare(request)
        await response.write(FITS)
        request.transport.close()  # type: ignore[union-attr]
        return response

    server.route("GET", "/files/short.fits", short)
    out = tmp_path / "out"
    async with VOClient(config(server)) as client:
        with pytest.raises(PayloadError):
            await client.download(server.url("/files/short.fits"), out, keep_partial=True)
    assert not (out / "short.fits").exists()
    assert {p.name for p in out.iterdir()} <= {"short.fits.part", "short.fits.part.json"}
