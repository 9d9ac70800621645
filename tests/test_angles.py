"""One angle parser for every size and radius, with the same range everywhere.

Degrees (a number), a Quantity, or text such as ``"2arcmin"``; more than 0 and
at most 180 deg. The SIA 1.0 SIZE of a search, a harvest's size, SIA 2.0 and
registry circle radii, and the CLI's ``--size`` of ``search``, ``harvest`` and
``sia-url`` all agree on what is accepted and what it means.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from astropy import units as u

from tests.harvest.minisky import MiniSky
from tests.servers import LocalServer
from voharvest import ParameterError
from voharvest.cli import main as cli_main
from voharvest.harvesting import HarvestOptions
from voharvest.protocol import regtap, sia1, sia2
from voharvest.protocol._encoding import angle
from voharvest.protocol.soda import Cutout

GOOD = [
    (0.2, 0.2),
    (180, 180.0),
    (1e-6, 1e-6),
    ("0.2", 0.2),
    ("2arcmin", 2 / 60),
    (" 30 arcsec ", 30 / 3600),
    ("0.2deg", 0.2),
    ("1.5 arcmin", 1.5 / 60),
    (2 * u.arcmin, 2 / 60),
    (0.01 * u.rad, math.degrees(0.01)),
]
BAD = [0, 0.0, -1, 180.0001, 360, "0", "-2arcmin", "181", "nan", "inf", "1e400deg", "2 m",
       "two", "", 1 * u.s, math.nan, math.inf, True, None]  # fmt: skip


def sia1_size(value: Any) -> float:
    url = sia1.build_url("http://h/sia", pos=(10, 20), size=value)
    return float(url.rsplit("SIZE=", 1)[1])


def sia2_radius(value: Any) -> float:
    url = sia2.build_url("http://h/sia2", pos=(10, 20, value))
    return float(url.rsplit("%20", 1)[1])


def registry_radius(value: Any) -> float:
    query = regtap.build_query(spatial=(10, 20, value))
    return float(query.split("CIRCLE(10.0, 20.0, ", 1)[1].split(")", 1)[0])


READERS = {
    "angle": lambda v: angle(v, "size"),
    "sia1 SIZE": sia1_size,
    "sia2 radius": sia2_radius,
    "registry radius": registry_radius,
    "harvest size": lambda v: HarvestOptions(size=v).size,
    "cutout box": lambda v: Cutout.box(v, 0.1).width,
}


# (A box's side must be below 180 deg: its polygon is drawn on the tangent plane.)
CASES = [
    pytest.param(reader, value, degrees, id=f"{name}-{value!r}")
    for name, reader in READERS.items()
    for value, degrees in GOOD
    if not (name == "cutout box" and degrees >= 180)
]


@pytest.mark.parametrize(("reader", "value", "degrees"), CASES)
def test_every_size_reads_the_same_forms_as_the_same_degrees(
    reader: Any, value: Any, degrees: float
) -> None:
    assert reader(value) == pytest.approx(degrees, rel=1e-15)


@pytest.mark.parametrize("reader", list(READERS.values()), ids=list(READERS))
@pytest.mark.parametrize("value", BAD, ids=[repr(v) for v in BAD])
def test_every_size_refuses_the_same_values(reader: Any, value: Any) -> None:
    with pytest.raises(ParameterError):
        reader(value)


def test_a_cutout_radius_is_at_most_90_deg() -> None:
    assert Cutout.circle("90").radius == 90.0
    with pytest.raises(ParameterError, match=r"\(0, 90\]"):
        Cutout.circle(90.5)


@pytest.mark.parametrize("command", ["search", "harvest", "sia-url"])
@pytest.mark.parametrize("size", ["0", "-1", "181", "nan", "2 m"])
async def test_the_cli_refuses_the_same_sizes_in_every_command(
    command: str, size: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:9/sia"  # never asked: the size is refused first
    argv = {
        "search": ["search", url, "--pos", "10 20"],
        "harvest": ["harvest", "--service", url, "--target", "10 20", "--out", str(tmp_path)],
        "sia-url": ["sia-url", url, "--ra", "10", "--dec", "20"],
    }[command]
    code = await asyncio.to_thread(cli_main, [*argv, "--size", size])
    assert code == 2
    assert "voharvest: error: --size:" in capsys.readouterr().err


async def test_harvest_and_search_take_2arcmin_from_the_command_line(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    MiniSky(server, per_search=1)
    fast = ["--no-rate-limit", "--attempts", "1"]
    harvest = ["harvest", "--service", server.url("/sia"), "--target", "10 20", "--size",
               "2arcmin", "--format", "image/fits", "--out", str(tmp_path / "out"), "--no-progress",
               *fast]  # fmt: skip
    assert await asyncio.to_thread(cli_main, harvest) == 0, capsys.readouterr().err
    search = ["search", server.url("/sia"), "--pos", "10 20", "--size", "2arcmin", *fast]
    assert await asyncio.to_thread(cli_main, search) == 0, capsys.readouterr().err
    offline = ["sia-url", server.url("/sia"), "--ra", "10", "--dec", "20", "--size", "2arcmin"]
    assert await asyncio.to_thread(cli_main, offline) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    sizes = [hit.query["SIZE"] for hit in server.hits_for("/sia")]
    assert sizes == [repr(2 / 60)] * 2
    assert printed.endswith(f"SIZE={2 / 60!r}")
