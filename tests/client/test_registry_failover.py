"""Registry failover: each endpoint once, quickly; then again those that may heal."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, RetryPolicy, TransportError, VOClient
from voharvest._config import RegistryEndpoint
from voharvest.testing import HostConfig, VOFarm


def endpoints(*urls: str) -> tuple[RegistryEndpoint, ...]:
    return tuple(RegistryEndpoint(url) for url in urls)


async def test_every_endpoint_is_named_with_its_cause(server: LocalServer):
    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy")

    server.route("POST", "/tap/sync", busy)
    config = ClientConfig(
        registries=endpoints(
            "http://127.0.0.1:9/tap", "http://reg.voharvest.invalid/tap", server.url("/tap")
        ),
        retry=RetryPolicy(attempts=3, initial=0.01, jitter=0.0),
        host=HostPolicy(rate=100),
    )
    async with VOClient(config) as client:
        with pytest.raises(TransportError) as caught:
            await client.regsearch(servicetype="sia")
    text = str(caught.value)
    assert "3 tried" in text
    assert "127.0.0.1:9" in text and "refused" in text
    assert "reg.voharvest.invalid" in text and "not found" in text
    assert server.url("/tap") in text and "503" in text
    # The one that may heal: once in the quick pass, then the policy's 3 attempts.
    assert len(server.hits_for("/tap/sync")) == 1 + 3


async def test_a_registry_that_heals_is_asked_again_after_the_quick_pass():
    # Seed 8: the farm's first registry answer is a 503 (no Retry-After), the next is not.
    flaky = HostConfig(faults={"503": 0.5}, fault_endpoints=("tap",), retry_after="none")
    async with VOFarm(hosts=1, config=flaky, seed=8) as farm:
        config = ClientConfig(
            registries=endpoints(farm.registry_url, "http://127.0.0.1:9/tap"),
            retry=RetryPolicy(attempts=3, initial=0.01, jitter=0.0),
        )
        async with VOClient(config) as client:
            found = await client.regsearch(servicetype="sia")
        assert found and found[0].ivoid == farm.hosts[0].ivoid
        counters = farm.counters[0]
        assert counters.faults["503"] == 1 and counters.requests == 2
