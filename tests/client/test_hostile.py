"""Every byte from a server is hostile: bombs, odd redirects, encodings, bad certificates."""

from __future__ import annotations

import gzip
import math
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import (
    ClientConfig,
    ConnectError,
    HostPolicy,
    RedirectError,
    RetryPolicy,
    TooLargeError,
    VOClient,
)
from voharvest.protocol import votable

CONFIG = ClientConfig(
    retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02, jitter=0.0),
    host=HostPolicy(rate=math.inf),
    max_answer_bytes=1_000_000,
)


async def test_a_compressed_bomb_is_stopped_at_the_cap(server: LocalServer):
    bomb = gzip.compress(b"<" * 50_000_000, compresslevel=9)  # 50 MB in ~50 kB
    assert len(bomb) < 100_000

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "text/xml"}
        )

    server.route("GET", "/bomb", serve)
    async with VOClient(CONFIG) as client:
        with pytest.raises(TooLargeError, match="cap"):
            await client.transport.request("GET", server.url("/bomb"))
        stats = client.stats[f"http://127.0.0.1:{server.port}"]
    assert stats.bytes <= CONFIG.max_answer_bytes + 256 * 1024


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x/"])
async def test_redirects_to_other_schemes_are_refused(server: LocalServer, target: str):
    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    server.route("GET", "/away", away)
    async with VOClient(CONFIG) as client:
        with pytest.raises(RedirectError):
            await client.transport.request("GET", server.url("/away"))
    assert len(server.hits_for("/away")) == 1  # not retried


async def test_too_many_redirects(server: LocalServer):
    async def hop(request: web.Request) -> web.Response:
        step = int(request.query.get("n", "0"))
        raise web.HTTPFound(f"/hop?n={step + 1}")

    server.route("GET", "/hop", hop)
    async with VOClient(CONFIG) as client:
        with pytest.raises(RedirectError):
            await client.transport.request("GET", server.url("/hop"))
    assert len(server.hits_for("/hop")) == CONFIG.max_redirects  # and no retry


def test_a_votable_in_latin1_is_read_as_declared():
    table = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        '<RESOURCE type="results"><TABLE>'
        '<FIELD name="access_url" datatype="char" arraysize="*"/>'
        '<FIELD name="obs_title" datatype="char" arraysize="*"/>'
        "<DATA><TABLEDATA><TR><TD>http://h/a.fits</TD><TD>Ångström Étoile</TD></TR>"
        "</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
    ).encode("latin-1")
    results = votable.parse_sia(table)
    assert results[0].title == "Ångström Étoile"


def test_bytes_that_are_not_text_are_a_format_error():
    from voharvest import FormatError

    with pytest.raises(FormatError):
        votable.parse_sia(b"\xff\xfe\x00<\x00V\x00O\x00" + bytes(range(256)) * 4)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


async def test_certificates_are_verified_unless_told_otherwise(self_signed: tuple[Path, Path]):
    key, cert = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="secret")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}/"
    try:
        assert CONFIG.verify_tls is True
        async with VOClient(CONFIG) as client:
            with pytest.raises(ConnectError, match="TLS") as caught:
                await client.transport.request("GET", url)
        assert caught.value.attempts == 1  # a bad certificate is not retried
        insecure = ClientConfig(retry=CONFIG.retry, host=CONFIG.host, verify_tls=False)
        async with VOClient(insecure) as client:
            answer = await client.transport.request("GET", url)
        assert answer.body == b"secret"
    finally:
        await runner.cleanup()
