"""The farm's three registries answer with the columns a query selects, as a RegTAP 1.1
service does: the plain one of a VOFarm, the one of a FarmVO and the embedded sky's."""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator

import aiohttp
import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table

from voharvest import VOClient
from voharvest._config import ClientConfig, RegistryEndpoint
from voharvest.protocol import regtap, tap
from voharvest.protocol.regtap import RESOURCE_COLUMNS
from voharvest.protocol.votable import parse_registry
from voharvest.testing import EmbeddedSky, VOFarm, discovery_vo

OURS = [*RESOURCE_COLUMNS, "interfaces"]
# pyvo.registry.search's layout: the resource columns, then parallel aggregates.
PYVO = (
    "SELECT ivoid, res_title, waveband,"
    " ivo_string_agg(COALESCE(access_url, ''), ':::py VO sep:::') AS access_urls,"
    " ivo_string_agg(COALESCE(standard_id, ''), ':::py VO sep:::') AS standard_ids"
    " FROM rr.resource NATURAL LEFT OUTER JOIN rr.capability"
    " NATURAL LEFT OUTER JOIN rr.interface"
    " WHERE standard_id IN ('ivo://ivoa.net/std/sia')"
    " GROUP BY ivoid, res_title, waveband"
)
# A hand-written query with voharvest's aggregate and two resource columns.
FEW = (
    f"SELECT res_title, ivoid, {regtap.interfaces_aggregate()}"
    " FROM rr.resource NATURAL LEFT OUTER JOIN rr.capability"
    " NATURAL LEFT OUTER JOIN rr.interface"
    " WHERE standard_id IN ('ivo://ivoa.net/std/sia')"
    " GROUP BY res_title, ivoid ORDER BY ivoid"
)


async def _sync(url: str, query: str) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/sync", data=tap.sync_fields(query)) as answer,
    ):
        assert answer.status == 200
        return await answer.read()


def _table(body: bytes) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_single_table(io.BytesIO(body)).to_table()


@pytest.fixture(params=["plain", "vo", "embedded"])
async def registry_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "plain":
        async with VOFarm(hosts=2) as farm:
            yield farm.registry_url
    elif request.param == "vo":
        vo = discovery_vo(0)
        async with VOFarm(hosts=vo.hosts, vo=vo) as farm:
            yield farm.registry_url
    else:
        async with EmbeddedSky() as sky:
            yield sky.registry_url


async def test_our_query_is_answered_with_every_column_it_selects(registry_url: str) -> None:
    body = await _sync(registry_url, regtap.build_query(servicetype="sia"))
    table = _table(body)
    assert table.colnames == OURS
    assert len(table) > 0
    assert set(table["content_level"]) == {"research"} and set(table["rights"]) == {"public"}
    # ... and read as resources, each with its SIA interface.
    resources = parse_registry(body)
    assert resources and all(r.access_url("sia") for r in resources)
    assert all(r.title and r.ivoid and r.wavebands for r in resources)


async def test_other_select_lists_are_answered_with_their_columns(registry_url: str) -> None:
    body = await _sync(registry_url, FEW)
    few = _table(body)
    assert few.colnames == ["res_title", "ivoid", "interfaces"] and len(few) > 0
    sia = {r.ivoid: r.access_url("sia") for r in parse_registry(body)}
    pyvo = _table(await _sync(registry_url, PYVO))
    assert pyvo.colnames == ["ivoid", "res_title", "waveband", "access_urls", "standard_ids"]
    assert dict(zip(pyvo["ivoid"], pyvo["access_urls"], strict=True)) == sia
    assert set(pyvo["standard_ids"]) == {"ivo://ivoa.net/std/sia"}


async def test_regsearch_tables_have_the_resource_columns(registry_url: str) -> None:
    config = ClientConfig(registries=(RegistryEndpoint(registry_url),))
    async with VOClient(config) as client:
        found = await client.regsearch(servicetype="sia")
    table = found.to_table()
    assert len(table) > 0 and set(RESOURCE_COLUMNS) <= set(table.colnames)
    # As the registry sent them, not masked for want of a column.
    assert list(table["content_level"]) == ["research"] * len(table)
    assert list(table["rights"]) == ["public"] * len(table)
