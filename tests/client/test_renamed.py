"""Renamed client verbs: the new names work, the old ones still do and say they are deprecated.

``VOClient.query()`` fetched a VOTable (it is no TAP query): now
``fetch_votable()``, and ``query_table()`` is ``fetch_table()``;
``VOClient.position()`` resolved names: now ``resolve_position()``.
"""

from __future__ import annotations

import math

import pytest
from aiohttp import web

from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, QueryError, RetryPolicy, VOClient

TABLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
  <RESOURCE type="results">
    <INFO name="QUERY_STATUS" value="OK"/>
    <TABLE>
      <FIELD name="n" datatype="int"/>
      <DATA><TABLEDATA><TR><TD>7</TD></TR><TR><TD>8</TD></TR></TABLEDATA></DATA>
    </TABLE>
  </RESOURCE>
</VOTABLE>
"""

ERROR_DOC = b"""<?xml version="1.0"?>
<VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
 <RESOURCE type="results">
  <INFO name="QUERY_STATUS" value="ERROR">MAXREC: not a number</INFO>
 </RESOURCE>
</VOTABLE>"""

SESAME_M51 = b"""<?xml version="1.0" encoding="UTF-8"?>
<Sesame><Target><name>M51</name>
  <Resolver name="S=Simbad"><jradeg>202.4696292</jradeg><jdedeg>+47.1952583</jdedeg></Resolver>
</Target></Sesame>
"""


def config(server: LocalServer) -> ClientConfig:
    return ClientConfig(
        sesame=(server.url("/sesame"),),
        retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02, jitter=0.0),
        host=HostPolicy(rate=math.inf),
    )


def answer(body: bytes, status: int = 200, content_type: str = "application/x-votable+xml"):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, status=status, content_type=content_type)

    return handler


async def test_fetch_votable_and_its_deprecated_name_query_give_the_same_table(server):
    server.route("GET", "/table", answer(TABLE))
    async with VOClient(config(server)) as client:
        new = await client.fetch_votable("GET", server.url("/table"))
        with pytest.deprecated_call(match=r"VOClient\.query\(\) is deprecated.*fetch_votable"):
            old = await client.query("GET", server.url("/table"))
    assert new.columns == old.columns == ([7, 8],)
    assert len(server.hits_for("/table")) == 2


async def test_fetch_table_and_its_deprecated_name_query_table_give_the_same_rows(server):
    server.route("GET", "/table", answer(TABLE))
    async with VOClient(config(server)) as client:
        new = await client.fetch_table("GET", server.url("/table"))
        with pytest.deprecated_call(match=r"VOClient\.query_table\(\) is deprecated.*fetch_table"):
            old = await client.query_table("GET", server.url("/table"))
    assert [int(v) for v in new.to_table()["n"]] == [int(v) for v in old.to_table()["n"]] == [7, 8]


async def test_the_deprecated_query_still_raises_the_services_error(server):
    server.route("GET", "/table", answer(ERROR_DOC, status=400, content_type="text/xml"))
    async with VOClient(config(server)) as client:
        with pytest.deprecated_call(), pytest.raises(QueryError, match="MAXREC: not a number"):
            await client.query("GET", server.url("/table"))


async def test_resolve_position_and_its_deprecated_name_position(server):
    server.route("GET", "/sesame", answer(SESAME_M51, content_type="text/xml"))
    async with VOClient(config(server)) as client:
        assert await client.resolve_position((10.0, 20.0)) == (10.0, 20.0)
        coord = await client.resolve_position("M51")
        with pytest.deprecated_call(
            match=r"VOClient\.position\(\) is deprecated.*resolve_position"
        ):
            again = await client.position("M51")
            same = await client.position((10.0, 20.0))
    assert coord.ra.deg == pytest.approx(202.4696292) and coord.dec.deg == pytest.approx(47.1952583)
    assert (again.ra.deg, again.dec.deg) == (coord.ra.deg, coord.dec.deg)
    assert same == (10.0, 20.0)
    assert len(server.hits_for("/sesame")) == 1  # cached: one request for both
