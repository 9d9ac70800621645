"""What ``regsearch`` returns: a list of resources with pyvo's conveniences.

The seed notebook's lines, on the recorded registry answers in the pyvo wheel,
with pyvo as the oracle: ``services.to_table()['ivoid','short_name','res_title']``,
lookup by short name (``services['SDSSDR7']``) and by ivoid, and the overflow
flag. The result stays a list: whatever callers did with one still works.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from aiohttp import web
from astropy.io.votable import parse as astropy_parse
from astropy.table import Table
from pyvo.registry.regtap import RegistryResource as PyvoRegistryResource
from pyvo.registry.regtap import RegistryResults as PyvoRegistryResults

from tests.recorded import pyvo_data
from tests.servers import LocalServer, votable_response
from voharvest import (
    ClientConfig,
    HostPolicy,
    OverflowWarning,
    RegistryEndpoint,
    RetryPolicy,
    VOClient,
)
from voharvest.protocol.regtap import FIELD_SEPARATOR
from voharvest.services import REGISTRY_COLUMNS, RegistryResource, RegistryResources

REGISTRY = "pyvo.registry.tests"
PYVO_SEPARATOR = ":::py VO sep:::"


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[VOClient]:
    config = ClientConfig(
        registries=(RegistryEndpoint(server.url("/reg/tap")),),
        retry=RetryPolicy(attempts=1),
        host=HostPolicy(rate=math.inf, concurrency=4),
    )
    async with VOClient(config) as opened:
        yield opened


def pyvo_results(data: bytes) -> PyvoRegistryResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PyvoRegistryResults(astropy_parse(io.BytesIO(data), verify="ignore"))


def serve(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return votable_response(body)

    return handler


async def search_recorded(server: LocalServer, client: VOClient, name: str) -> RegistryResources:
    server.route("POST", "/reg/tap/sync", serve(pyvo_data(REGISTRY, name)))
    return await client.regsearch(servicetype="sia")


def cells(column: object) -> list[object]:
    """A column's values as Python objects, None where masked."""
    mask = np.ma.getmaskarray(column)
    data = np.ma.getdata(column)
    return [None if m else (v.item() if isinstance(v, np.generic) else v)
            for v, m in zip(data, mask, strict=True)]  # fmt: skip


def test_the_columns_are_pyvos() -> None:
    expected = [c if isinstance(c, str) else c[1] for c in PyvoRegistryResource.expected_columns]
    assert list(REGISTRY_COLUMNS) == expected


@pytest.mark.parametrize("name", ["regtap.xml", "multi-interface.xml"])
async def test_to_table_has_pyvos_columns_and_values(
    server: LocalServer, client: VOClient, name: str
) -> None:
    services = await search_recorded(server, client, name)
    theirs = pyvo_results(pyvo_data(REGISTRY, name))
    table = services.to_table()
    assert isinstance(table, Table)
    assert table.colnames == list(REGISTRY_COLUMNS)
    assert len(table) == len(services) == len(theirs)
    pyvo_table = theirs.to_table()
    for column in REGISTRY_COLUMNS:
        if column in ("access_urls", "standard_ids", "intf_types", "intf_roles",
                      "cap_descriptions"):  # fmt: skip
            # pyvo's table holds its own pseudo-array text; ours a tuple per resource
            expected = [tuple(text.split(PYVO_SEPARATOR)) for text in pyvo_table[column]]
            assert [tuple(v) for v in table[column]] == expected, column
        else:
            assert cells(table[column]) == cells(pyvo_table[column]), column


async def test_the_notebook_lines(server: LocalServer, client: VOClient) -> None:
    services = await search_recorded(server, client, "regtap.xml")
    theirs = pyvo_results(pyvo_data(REGISTRY, "regtap.xml"))
    # print(services.to_table()['ivoid','short_name','res_title'])
    summary = services.to_table()["ivoid", "short_name", "res_title"]
    assert summary.colnames == ["ivoid", "short_name", "res_title"]
    assert list(summary["ivoid"]) == [r.ivoid for r in theirs]
    assert list(summary["short_name"]) == [r.short_name for r in theirs]
    assert list(summary["res_title"]) == [r.res_title for r in theirs]
    shown = "\n".join(summary.pformat(max_width=-1))
    assert "ivo://cds.vizier/j/a+a/492/923" in shown and "J/A+A/492/923" in shown
    # services['SDSSDR7']-style lookup, by short name and by ivoid
    for record in theirs:
        mine = services[record.short_name]
        assert isinstance(mine, RegistryResource) and mine.client is client
        assert mine.ivoid == theirs[record.short_name].ivoid == record.ivoid
        assert services[record.ivoid] is mine
        assert services[record.ivoid.upper().replace("IVO://", "ivo://")] is mine
    with pytest.raises(KeyError, match="short name 'SDSSDR7'"):
        services["SDSSDR7"]
    with pytest.raises(KeyError, match="ivoid"):
        services["ivo://nowhere/x"]
    assert services.overflow is False
    assert services.url == client.config.registries[0].url + "/sync"


def registry_answer(rows: list[tuple[str, str, str]], *, overflow: bool = False) -> bytes:
    """Our query's layout: (ivoid, short_name, access_url) rows with one SIA interface."""
    interface = ("ivo://ivoa.net/std/sia", "vs:ParamHTTP", "std", "1.0", "{url}", "images")
    body = "".join(
        f"<TR><TD>{ivoid}</TD><TD>{short}</TD><TD>{short} images</TD><TD>optical</TD>"
        f"<TD>{FIELD_SEPARATOR.join(interface).replace('{url}', url)}</TD></TR>"
        for ivoid, short, url in rows
    )
    status = '<INFO name="QUERY_STATUS" value="OVERFLOW"/>' if overflow else ""
    return (
        '<?xml version="1.0"?><VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        '<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/><TABLE>'
        + "".join(
            f'<FIELD name="{n}" datatype="char" arraysize="*"/>'
            for n in ("ivoid", "short_name", "res_title", "waveband", "interfaces")
        )
        + f"<DATA><TABLEDATA>{body}</TABLEDATA></DATA></TABLE>{status}</RESOURCE></VOTABLE>"
    ).encode()


SDSS = [
    ("ivo://org.sdss/dr7/sia", "SDSSDR7", "http://skyserver.sdss.org/vo/dr7sia/sia.asmx?"),
    ("ivo://org.sdss/dr9/sia", "SDSSDR9", "http://skyserver.sdss.org/vo/dr9sia?"),
    ("ivo://mirror.example/sdss/dr7", "SDSSDR7m", "http://mirror.example/dr7?"),
]


async def test_short_name_lookup_and_a_list_as_before(server: LocalServer, client: VOClient):
    server.route("POST", "/reg/tap/sync", serve(registry_answer(SDSS)))
    services = await client.regsearch(servicetype="sia", waveband="optical", keywords=["sdss"])
    dr7 = services["SDSSDR7"]
    assert dr7.ivoid == "ivo://org.sdss/dr7/sia"
    assert dr7.access_url("sia") == SDSS[0][2]
    assert dr7.service("sia").access_url == SDSS[0][2]
    # still the list it was: len, index, slices, iteration, unpacking, +, ==
    assert isinstance(services, list)
    assert len(services) == 3 and services[0] is dr7 and services[-1].short_name == "SDSSDR7m"
    assert [r.short_name for r in services[1:]] == ["SDSSDR9", "SDSSDR7m"]
    first, second, third = services
    assert (first, second, third) == tuple(services)
    assert services + [dr7] == [first, second, third, dr7]  # noqa: RUF005 (as lists do)
    assert services == [first, second, third]
    assert services.to_table()["short_name"].tolist() == ["SDSSDR7", "SDSSDR9", "SDSSDR7m"]
    # columns the answer did not carry are masked, not invented
    assert services.to_table()["rights"].mask.all()
    assert services.to_table()["access_urls"][0] == (SDSS[0][2],)


async def test_a_short_name_two_resources_share_is_a_key_error_naming_them(
    server: LocalServer, client: VOClient
) -> None:
    twins = [*SDSS, ("ivo://other.example/dr7", "SDSSDR7", "http://other.example/dr7?")]
    server.route("POST", "/reg/tap/sync", serve(registry_answer(twins)))
    services = await client.regsearch(keywords=["sdss"])
    with pytest.raises(KeyError, match=r"ivo://org\.sdss/dr7/sia, ivo://other\.example/dr7"):
        services["SDSSDR7"]
    assert services["ivo://other.example/dr7"].short_name == "SDSSDR7"


async def test_the_overflow_flag(server: LocalServer, client: VOClient) -> None:
    server.route("POST", "/reg/tap/sync", serve(registry_answer(SDSS[:2], overflow=True)))
    with pytest.warns(OverflowWarning):
        services = await client.regsearch(keywords=["sdss"], maxrec=2)
    assert services.overflow is True and len(services) == 2
