"""A credential never follows a redirect out of its origin: two servers record every header.

Every credential kind is checked: Authorization (basic, bearer), Cookie, and
the TLS client certificate (which aiohttp, following a redirect itself, would
present to whatever host the redirect names).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.client.tls import ScratchCA
from tests.servers import LocalServer
from voharvest import (
    AuthenticationError,
    BasicAuth,
    BearerToken,
    ClientCertificate,
    ClientConfig,
    Cookies,
    Credentials,
    HostPolicy,
    RedirectError,
    RetryPolicy,
    VOClient,
)

SECRET = "s3cr3t-Kq2"
CONFIG = ClientConfig(
    retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02, jitter=0.0),
    host=HostPolicy(rate=math.inf, concurrency=4),
    parse_workers=0,
)


def _with(*entries) -> ClientConfig:
    import dataclasses

    return dataclasses.replace(CONFIG, credentials=Credentials(entries=entries))


def _leaks(headers: dict[str, str]) -> bool:
    return any(SECRET in value for value in headers.values()) or any(
        name.lower() in ("authorization", "cookie") for name in headers
    )


@pytest.fixture
async def servers() -> AsyncIterator[tuple[LocalServer, LocalServer]]:
    first = await LocalServer(host="127.0.0.1").start()
    other = await LocalServer(host="127.0.0.2").start()
    yield first, other
    await first.stop()
    await other.stop()


def _redirect(location: str, status: int = 302):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    return handler


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="landed")


CREDENTIALS = {
    "basic": lambda url: BasicAuth(url, "alice", SECRET),
    "token": lambda url: BearerToken(url, SECRET),
    "cookie": lambda url: Cookies(url, {"sid": SECRET}),
}


@pytest.mark.parametrize("kind", CREDENTIALS)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_host_carries_no_credential(servers, kind, status):
    first, other = servers
    first.route("GET", "/go", _redirect(other.url("/land"), status))
    other.route("GET", "/land", _ok)
    async with VOClient(_with(CREDENTIALS[kind](first.url("/")))) as client:
        answer = await client.transport.request("GET", first.url("/go"))
    assert answer.body == b"landed" and answer.url == other.url("/land")
    assert _leaks(first.hits_for("/go")[0].headers)  # it went where it belongs ...
    assert not _leaks(other.hits_for("/land")[0].headers)  # ... and nowhere else


async def test_another_port_of_the_same_host_is_another_origin(servers):
    first, _ = servers
    second = await LocalServer(host="127.0.0.1").start()
    try:
        first.route("GET", "/go", _redirect(second.url("/land")))
        second.route("GET", "/land", _ok)
        async with VOClient(_with(BearerToken(first.url("/"), SECRET))) as client:
            await client.transport.request("GET", first.url("/go"))
        assert _leaks(first.hits_for("/go")[0].headers)
        assert not _leaks(second.hits_for("/land")[0].headers)
    finally:
        await second.stop()


async def test_a_redirect_back_home_gets_the_credential_again_and_downloads_follow_too(servers):
    first, other = servers
    first.route("GET", "/go", _redirect(other.url("/bounce")))
    other.route("GET", "/bounce", _redirect(first.url("/home")))
    first.route("GET", "/home", _ok)
    async with VOClient(_with(BasicAuth(first.url("/"), "alice", SECRET))) as client:
        async with client.transport.stream(first.url("/go")) as stream:
            body = b"".join([chunk async for chunk in stream.chunks(1024)])
    assert body == b"landed"
    assert not _leaks(other.hits_for("/bounce")[0].headers)
    assert _leaks(first.hits_for("/home")[0].headers)


async def test_a_path_scope_stays_in_its_path(servers):
    first, _ = servers
    first.route("GET", "/private/go", _redirect("/public/land"))
    first.route("GET", "/public/land", _ok)
    first.route("GET", "/privateer", _ok)
    async with VOClient(_with(BearerToken(first.url("/private"), SECRET))) as client:
        await client.transport.request("GET", first.url("/private/go"))
        await client.transport.request("GET", first.url("/privateer"))
    assert _leaks(first.hits_for("/private/go")[0].headers)
    assert not _leaks(first.hits_for("/public/land")[0].headers)
    assert not _leaks(first.hits_for("/privateer")[0].headers)


async def test_303_after_post_turns_into_get_without_the_body(servers):
    first, other = servers
    first.route("POST", "/job", _redirect(other.url("/job/1"), 303))
    other.route("GET", "/job/1", _ok)
    async with VOClient(_with(BasicAuth(first.url("/"), "alice", SECRET))) as client:
        await client.transport.request("POST", first.url("/job"), data={"QUERY": "x"})
    hit = other.hits_for("/job/1")[0]
    assert hit.method == "GET" and hit.body == b"" and not _leaks(hit.headers)


async def test_307_keeps_method_and_body(servers):
    first, _ = servers
    first.route("POST", "/old", _redirect("/new", 307))
    first.route("POST", "/new", _ok)
    async with VOClient(_with(BasicAuth(first.url("/"), "alice", SECRET))) as client:
        await client.transport.request("POST", first.url("/old"), data={"QUERY": "x"})
    hit = first.hits_for("/new")[0]
    assert hit.body == b"QUERY=x" and _leaks(hit.headers)


async def test_redirect_loops_and_odd_targets_are_redirect_errors(servers):
    first, _ = servers
    first.route("GET", "/loop", _redirect("/loop"))
    first.route("GET", "/ftp", _redirect("ftp://127.0.0.1/file"))
    async with VOClient(_with(BasicAuth(first.url("/"), "alice", SECRET))) as client:
        with pytest.raises(RedirectError):
            await client.transport.request("GET", first.url("/loop"))
        with pytest.raises(RedirectError):
            await client.transport.request("GET", first.url("/ftp"))
    assert len(first.hits_for("/loop")) == 1 + CONFIG.max_redirects


@pytest.fixture
def ca(tmp_path: Path) -> ScratchCA:
    folder = tmp_path / "pki"
    folder.mkdir()
    return ScratchCA(folder)


async def test_https_to_http_never_carries_it_even_to_a_scope_of_its_own(ca: ScratchCA):
    """The chain started protected: the http hop goes bare although a credential is
    configured for it (the https one stays behind by its scope anyway)."""
    secure = await LocalServer(host="127.0.0.1", ssl_context=ca.server_context()).start()
    plain = await LocalServer(host="127.0.0.1").start()
    try:
        secure.route("GET", "/go", _redirect(plain.url("/land")))
        plain.route("GET", "/land", _ok)
        plain.route("GET", "/direct", _ok)
        config = _with(
            BearerToken(secure.url("/"), SECRET),
            BasicAuth(plain.url("/"), "alice", SECRET),
        )
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca.client_context()))
        async with session, VOClient(config, session=session) as client:
            await client.transport.request("GET", secure.url("/go"))
            await client.transport.request("GET", plain.url("/direct"))
        assert _leaks(secure.hits_for("/go")[0].headers)
        assert not _leaks(plain.hits_for("/land")[0].headers)
        assert _leaks(plain.hits_for("/direct")[0].headers)  # its own scope, asked directly
    finally:
        await secure.stop()
        await plain.stop()


async def test_the_client_certificate_is_not_presented_to_another_origin(ca: ScratchCA):
    seen: dict[str, object] = {}

    def recording(name: str):
        async def handler(request: web.Request) -> web.Response:
            seen[name] = request.transport.get_extra_info("peercert") if request.transport else None
            return web.Response(text="landed")

        return handler

    first = await LocalServer(
        host="127.0.0.1", ssl_context=ca.server_context(ask_client_certificate=True)
    ).start()
    other = await LocalServer(
        host="127.0.0.2", ssl_context=ca.server_context(ask_client_certificate=True)
    ).start()
    try:
        first.route("GET", "/go", _redirect(other.url("/land")))
        first.route("GET", "/mine", recording("first"))
        other.route("GET", "/land", recording("other"))
        cert, key = ca.issue("alice", server=False)
        config = _with(ClientCertificate(first.url("/"), cert, key, ca_file=ca.ca_file))
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca.client_context()))
        async with session, VOClient(config, session=session) as client:
            await client.transport.request("GET", first.url("/mine"))
            await client.transport.request("GET", first.url("/go"))
        subject = dict(rdn[0] for rdn in seen["first"]["subject"])  # type: ignore[index]
        assert subject["commonName"] == "alice"
        assert not seen["other"]  # no certificate on the redirect's target
    finally:
        await first.stop()
        await other.stop()


async def test_401_is_not_retried_and_names_the_challenge(servers):
    first, _ = servers

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(
            status=401,
            headers={
                "WWW-Authenticate": 'Bearer realm="x", error="invalid_token", Basic realm="y"'
            },
        )

    first.route("GET", "/q", refuse)
    async with VOClient(_with(BearerToken(first.url("/"), SECRET))) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.transport.request("GET", first.url("/q"))
    error = caught.value
    assert len(first.hits_for("/q")) == 1 and error.attempts == 1 and not error.retryable
    assert error.challenge == ("Bearer", "Basic") and error.method.endswith("#token")
    assert "Bearer, Basic" in str(error) and "http://127.0.0.1" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error)


async def test_401_even_when_the_retry_policy_lists_it(servers):
    import dataclasses

    first, _ = servers

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=403)

    first.route("GET", "/q", refuse)
    config = dataclasses.replace(
        CONFIG, retry=RetryPolicy(attempts=3, initial=0.01, statuses=frozenset({403, 503}))
    )
    async with VOClient(config) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.transport.request("GET", first.url("/q"))
    assert len(first.hits_for("/q")) == 1 and caught.value.method == "anonymous"
