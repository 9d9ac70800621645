"""Each credential kind end to end against a protected VOFarm host, and refused without it.

A protected host answers 401/403 to everything but its VOSI capabilities; a
harvest with the right credential searches and downloads, the same harvest
without it fails with AuthenticationError after exactly one request per
search, and no secret reaches any file under the harvest directory, any log
line at DEBUG, any error message or the configuration's repr.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.client.tls import ScratchCA
from voharvest import (
    AuthenticationError,
    BasicAuth,
    BearerToken,
    ClientCertificate,
    ClientConfig,
    Cookies,
    Credentials,
    HostPolicy,
    RetryPolicy,
    VOClient,
)
from voharvest.harvesting import harvest
from voharvest.testing import FarmAuth, HostConfig, VOFarm

TARGETS = [(10.0, 20.0), (40.0, -5.0)]
RETRY = RetryPolicy(attempts=3, initial=0.01, maximum=0.02, jitter=0.0)
PASSWORD = "pw-Zq81-secret"
TOKEN = "tok-8XyQ-secret"
COOKIE = "ck-77Hw-secret"


@pytest.fixture
def ca(tmp_path: Path) -> ScratchCA:
    folder = tmp_path / "pki"
    folder.mkdir()
    return ScratchCA(folder)


def _config(credentials: Credentials) -> ClientConfig:
    return ClientConfig(
        retry=RETRY,
        host=HostPolicy(rate=math.inf, concurrency=4),
        credentials=credentials,
        parse_workers=0,
    )


async def _session(ca: ScratchCA | None) -> aiohttp.ClientSession | None:
    """A session trusting the test CA (our own CA is not in the system's store)."""
    if ca is None:
        return None
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca.client_context()))


async def _harvest(
    farm: VOFarm, credentials: Credentials, out: Path, ca: ScratchCA | None = None
) -> list:
    session = await _session(ca)
    try:
        async with VOClient(_config(credentials), session=session) as client:
            return [
                item
                async for item in harvest(
                    client,
                    [client.sia_service(farm.hosts[0].sia2_url, version=2)],
                    TARGETS,
                    size=0.2,
                    search_format="image/fits",
                    download_to=out,
                )
            ]
    finally:
        if session is not None:
            await session.close()


@pytest.fixture
async def farm_for(ca: ScratchCA) -> AsyncIterator:
    farms: list[VOFarm] = []

    async def start(auth: FarmAuth, *, tls: bool = False) -> VOFarm:
        tls_context = ca.server_context(ask_client_certificate=True) if tls else None
        farm = VOFarm(
            hosts=1,
            config=HostConfig(auth=auth, tls=tls_context, images_per_search=2),
            addresses=["127.0.0.1"],
        )
        await farm.start()
        farms.append(farm)
        return farm

    yield start
    for farm in farms:
        await farm.stop()


def _secrets_absent(out: Path, texts: list[str], secrets: list[str]) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"{secret} in {path}"
    for text in texts:
        for secret in secrets:
            assert secret not in text


CASES = {
    "basic": (
        FarmAuth(method="basic", username="alice", password=PASSWORD),
        lambda url, ca: BasicAuth(url, "alice", PASSWORD),
        False,
        401,
        ("Basic",),
    ),
    "token": (
        FarmAuth(method="token", secret=TOKEN),
        lambda url, ca: BearerToken(url, TOKEN),
        True,
        401,
        ("Bearer",),
    ),
    "cookie": (
        FarmAuth(method="cookie", cookie_name="sid", secret=COOKIE),
        lambda url, ca: Cookies(url, {"sid": COOKIE}),
        False,
        403,
        (),
    ),
    "certificate": (
        FarmAuth(method="certificate", username="alice"),
        lambda url, ca: ClientCertificate(
            url, *ca.issue("alice", server=False), ca_file=ca.ca_file
        ),
        True,
        403,
        (),
    ),
}


@pytest.mark.parametrize("kind", CASES)
async def test_each_method_harvests_and_is_refused_without(
    kind: str, farm_for, ca: ScratchCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    auth, make, tls, status, challenge = CASES[kind]
    farm = await farm_for(auth, tls=tls)
    host = farm.hosts[0]
    credential = make(host.base_url, ca)
    caplog.set_level(logging.DEBUG)

    out = tmp_path / "with"
    items = await _harvest(farm, Credentials(entries=(credential,)), out, ca if tls else None)
    searches = [i for i in items if i.kind == "search"]
    downloads = [i for i in items if i.kind == "download"]
    assert len(searches) == 2 and all(i.ok for i in searches), [i.error for i in searches]
    assert downloads and all(i.ok for i in downloads), [i.error for i in downloads]
    assert host.counters.statuses[status] == 0

    host.counters.statuses.clear()
    requests_before = host.counters.requests
    bare = tmp_path / "without"
    items = await _harvest(farm, Credentials(), bare, ca if tls else None)
    failed = [i for i in items if i.kind == "search"]
    assert len(failed) == 2 and not any(i.ok for i in failed)
    for item in failed:
        error = item.error
        assert isinstance(error, AuthenticationError), repr(error)
        assert error.status == status and error.attempts == 1
        assert error.origin == f"{host.base_url}" and error.method == "anonymous"
        assert error.challenge == challenge
        assert host.base_url in str(error)
        for scheme in challenge:
            assert scheme in str(error)
    # One request per search: a refusal is never retried.
    assert host.counters.requests - requests_before == 2
    assert host.counters.statuses[status] == 2

    texts = [record.getMessage() for record in caplog.records]
    texts += [str(i.error) for i in items if i.error] + [
        repr(_config(Credentials(entries=(credential,))))
    ]
    _secrets_absent(tmp_path / "with", texts, [PASSWORD, TOKEN, COOKIE])
    _secrets_absent(bare, [], [PASSWORD, TOKEN, COOKIE])


async def test_a_wrong_credential_is_named_in_the_error(farm_for, tmp_path: Path):
    farm = await farm_for(FarmAuth(method="basic", username="alice", password=PASSWORD))
    wrong = BasicAuth(farm.hosts[0].base_url, "alice", "not-the-password")
    items = await _harvest(farm, Credentials(entries=(wrong,)), tmp_path)
    error = next(i.error for i in items if i.kind == "search")
    assert isinstance(error, AuthenticationError)
    assert error.method == "ivo://ivoa.net/sso#BasicAA" and error.challenge == ("Basic",)
    assert "not-the-password" not in str(error) and "not-the-password" not in repr(error)


async def test_capabilities_are_learned_and_a_refused_method_is_not_sent(farm_for, tmp_path: Path):
    """The service says BasicAA: a bearer token for its origin stays at home."""
    farm = await farm_for(FarmAuth(method="basic", username="alice", password=PASSWORD))
    host = farm.hosts[0]
    credentials = Credentials(
        entries=(BearerToken(host.base_url, TOKEN), BasicAuth(host.base_url, "alice", PASSWORD))
    )
    async with VOClient(_config(credentials)) as client:
        assert client.transport.authenticator is not None
        # Before the capabilities are known, the first credential in scope goes.
        assert client.transport.authenticator.choose(host.sia2_url).method.endswith("#token")
        rules = await client.capabilities(host.base_url + "/capabilities")
        assert {r.url for r in rules} == {host.sia1_url.split("?")[0], host.sia2_url, host.tap_url}
        choice = client.transport.authenticator.choose(host.sia2_url + "?POS=CIRCLE+1+2+0.1")
        assert choice.method == "ivo://ivoa.net/sso#BasicAA"
        answer = await client.transport.request("GET", host.sia2_url + "?MAXREC=1")
        assert answer.status == 200


async def test_two_protected_hosts_each_get_their_own_credential(tmp_path: Path):
    """Host 0 wants a password, host 1 a token: a harvest of both sends each its
    own (either one's credential at the other would be refused)."""
    per_host = {
        0: HostConfig(auth=FarmAuth(method="basic", username="alice", password=PASSWORD)),
        1: HostConfig(auth=FarmAuth(method="token", secret=TOKEN)),
    }
    async with VOFarm(hosts=2, per_host=per_host) as farm:
        first, second = farm.hosts
        credentials = Credentials(
            entries=(
                BasicAuth(first.base_url, "alice", PASSWORD),
                BearerToken(second.base_url, TOKEN),
            )
        )
        async with VOClient(_config(credentials)) as client:
            items = [
                item
                async for item in harvest(
                    client,
                    [client.sia_service(h.sia2_url, version=2) for h in farm.hosts],
                    TARGETS,
                    size=0.2,
                    search_format="image/fits",
                    download_to=tmp_path,
                )
            ]
        assert sum(i.kind == "search" for i in items) == 4
        assert all(i.ok for i in items), [i.error for i in items if not i.ok]
        for host in farm.hosts:
            assert host.counters.statuses[401] == 0 and host.counters.image_fetches
