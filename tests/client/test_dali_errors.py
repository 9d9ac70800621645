"""DALI error documents sent with an HTTP error status are query errors with their message."""

from __future__ import annotations

import math

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, HTTPStatusError, QueryError, RetryPolicy, VOClient

ERROR_DOC = b"""<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
 <RESOURCE type="results">
  <INFO name="QUERY_STATUS" value="ERROR">POS: Dec 95 is out of range</INFO>
 </RESOURCE>
</VOTABLE>"""

CONFIG = ClientConfig(
    retry=RetryPolicy(attempts=3, initial=0.01, maximum=0.02, jitter=0.0),
    host=HostPolicy(rate=math.inf),
)


@pytest.mark.parametrize(("status", "tries"), [(400, 1), (500, 3)])
async def test_error_votable_with_error_status_is_a_query_error(
    server: LocalServer, status: int, tries: int
):
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(body=ERROR_DOC, status=status, content_type="text/xml")

    server.route("GET", "/sia", refuse)
    async with VOClient(CONFIG) as client:
        with pytest.raises(QueryError, match="Dec 95 is out of range") as caught:
            await client.sia_service(server.url("/sia")).search(pos=(10, 20), size=0.1)
    assert caught.value.status == status
    assert isinstance(caught.value.__cause__, HTTPStatusError)
    assert len(server.hits_for("/sia")) == tries


async def test_plain_error_page_stays_an_http_error(server: LocalServer):
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(text="Bad request: POS", status=400)

    server.route("GET", "/sia", refuse)
    async with VOClient(CONFIG) as client:
        with pytest.raises(HTTPStatusError, match="Bad request"):
            await client.sia_service(server.url("/sia")).search(pos=(10, 20), size=0.1)
