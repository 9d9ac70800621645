"""The harvest engine on a local SIA service: choice, streaming, failures as items, resume."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from tests.harvest.minisky import MiniSky, fits_bytes
from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, ParameterError, RetryPolicy, VOClient
from voharvest.harvesting import harvest

CONFIG = ClientConfig(
    retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02, jitter=0.0),
    host=HostPolicy(rate=math.inf, concurrency=8),
)
TARGETS = [(10.0, 20.0), (11.0, 21.0), (12.0, 22.0)]


def files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith("voharvest-journal")
    }


async def test_search_and_download_every_chosen_record(server: LocalServer, tmp_path: Path):
    sky = MiniSky(server, per_search=2)
    out = tmp_path / "out"
    async with VOClient(CONFIG) as client:
        items = [
            item
            async for item in harvest(
                client,
                [server.url("/sia")],
                TARGETS,
                size=0.2,
                search_format="image/fits",
                download_to=out,
            )
        ]
    searches = [i for i in items if i.kind == "search"]
    downloads = [i for i in items if i.kind == "download"]
    assert len(searches) == 3 and all(i.ok and i.records == 2 for i in searches)
    assert len(downloads) == 6 and all(i.ok for i in downloads)
    on_disk = files(out)
    assert len(on_disk) == 6
    for item in downloads:
        name = item.url.rsplit("/", 1)[-1]
        assert item.path.read_bytes() == fits_bytes(name)
        assert item.path.is_relative_to(out)
    # The HTML previews were never fetched; every image exactly once.
    assert set(sky.fetches.values()) == {1} and len(sky.fetches) == 6
    assert not any(p.name.endswith(".part") for p in out.rglob("*"))


async def test_identical_urls_are_fetched_once(server: LocalServer, tmp_path: Path):
    sky = MiniSky(server, per_search=1, shared=True)
    async with VOClient(CONFIG) as client:
        failures = await harvest(
            client, [server.url("/sia")], TARGETS, search_format="image/fits", download_to=tmp_path
        ).run()
    assert failures == []
    assert sky.fetches == {"shared_0.fits": 1}


async def test_a_failed_download_is_an_item_not_the_end(server: LocalServer, tmp_path: Path):
    sky = MiniSky(server, per_search=2)
    sky.broken.add("11.0000_21.0000_1.fits")
    async with VOClient(CONFIG) as client:
        items = [
            i
            async for i in harvest(
                client,
                [server.url("/sia")],
                TARGETS,
                search_format="image/fits",
                download_to=tmp_path,
            )
        ]
    failed = [i for i in items if not i.ok]
    assert len(failed) == 1 and failed[0].kind == "download"
    assert failed[0].url.endswith("11.0000_21.0000_1.fits")
    assert sum(1 for i in items if i.kind == "download" and i.ok) == 5
    # Nothing partial under a final name: every .fits is whole; the cut one is only a .part.
    finals = {p: d for p, d in files(tmp_path).items() if p.endswith(".fits")}
    assert len(finals) == 5
    for path, data in finals.items():
        original = Path(path).name.removeprefix("Field_").rsplit("-", 1)[0] + ".fits"
        assert data == fits_bytes(original)
    leftovers = sorted(Path(p).suffix for p in files(tmp_path) if "11.0000_21.0000_1" in p)
    assert leftovers == [".json", ".part"]  # kept to resume with Range next time


async def test_a_failing_service_does_not_stop_the_others(server: LocalServer, tmp_path: Path):
    MiniSky(server, per_search=1)
    async with VOClient(CONFIG) as client:
        run = harvest(
            client,
            [server.url("/sia"), server.url("/nothing-here")],
            TARGETS,
            search_format="image/fits",
            download_to=tmp_path,
        )
        items = [i async for i in run]
    failed = [i for i in items if not i.ok]
    assert len(failed) == 3 and {i.kind for i in failed} == {"search"}
    assert sum(1 for i in items if i.kind == "download" and i.ok) == 3
    totals = {label: t for label, t in run.totals.items()}
    assert sum(t.searches_failed for t in totals.values()) == 3


async def test_rerun_finishes_only_what_remains(server: LocalServer, tmp_path: Path):
    sky = MiniSky(server, per_search=2)
    sky.broken.add("12.0000_22.0000_0.fits")
    async with VOClient(CONFIG) as client:
        first = await harvest(
            client, [server.url("/sia")], TARGETS, search_format="image/fits", download_to=tmp_path
        ).run()
    assert len(first) == 1
    sky.broken.clear()
    searches_before = len(server.hits_for("/sia"))
    async with VOClient(CONFIG) as client:
        items = [
            i
            async for i in harvest(
                client,
                [server.url("/sia")],
                TARGETS,
                search_format="image/fits",
                download_to=tmp_path,
            )
        ]
    # No search again, one download: the one that failed.
    assert len(server.hits_for("/sia")) == searches_before
    assert [i.kind for i in items] == ["download"] and items[0].ok
    assert sky.completed["12.0000_22.0000_0.fits"] == 1
    assert all(count == 1 for count in sky.completed.values())
    assert len(files(tmp_path)) == 6


async def test_a_journal_with_other_options_is_refused(server: LocalServer, tmp_path: Path):
    MiniSky(server, per_search=1)
    async with VOClient(CONFIG) as client:
        await harvest(
            client, [server.url("/sia")], TARGETS[:1], size=0.2, download_to=tmp_path
        ).run()
        with pytest.raises(ParameterError, match="other options"):
            await harvest(
                client, [server.url("/sia")], TARGETS[:1], size=0.5, download_to=tmp_path
            ).run()


@pytest.mark.parametrize(("started", "resumed"), [("12arcmin", 0.2), ("111arcmin", 1.85)])
async def test_the_same_size_given_another_way_resumes(
    server: LocalServer, tmp_path: Path, started: str, resumed: float
):
    # 111 arcmin is 1.8499999999999999 deg once converted, 1.85 typed: the same size.
    sky = MiniSky(server, per_search=1)
    sia = [server.url("/sia")]
    fits = {"search_format": "image/fits", "download_to": tmp_path}
    async with VOClient(CONFIG) as client:
        assert await harvest(client, sia, TARGETS[:1], size=started, **fits).run() == []
        searches = len(server.hits_for("/sia"))
        again = [i async for i in harvest(client, sia, TARGETS, size=resumed, **fits)]
        with pytest.raises(ParameterError, match="other options"):
            await harvest(client, sia, TARGETS, size=resumed * 1.001, **fits).run()
    # Resumed: the first target is not searched again, the two new ones are.
    assert len(server.hits_for("/sia")) == searches + 2
    assert sorted(i.kind for i in again) == ["download"] * 2 + ["search"] * 2
    assert all(i.ok for i in again)
    assert len(sky.completed) == 3 and all(n == 1 for n in sky.completed.values())


async def test_targets_from_a_file_and_names(server: LocalServer, tmp_path: Path):
    MiniSky(server, per_search=1)
    listing = tmp_path / "targets.txt"
    listing.write_text("# my fields\n10 20\n\n11.0, 21.0 second-field\n")
    async with VOClient(CONFIG) as client:
        items = [
            i
            async for i in harvest(
                client, [server.url("/sia")], listing, search_format="image/fits"
            )
        ]
    assert sorted(i.target for i in items) == ["10.00000 +20.00000", "second-field"]
    assert all(i.kind == "search" and i.ok for i in items)


HOSTILE_TITLES = [
    "../../../../tmp/evil-{name}",
    "/etc/passwd-{name}",
    "..\\..\\windows\\{name}",
    "CON",
    "\x00nul{name}",
    "." * 300 + "{name}",
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
async def test_hostile_titles_and_labels_stay_inside_the_output_directory(
    server: LocalServer, tmp_path: Path, title: str
):
    sky = MiniSky(server, per_search=2)
    sky.title = title
    out = tmp_path / "out"
    targets = [(10.0, 20.0, "../../escaped"), (11.0, 21.0, "/abs/label")]
    async with VOClient(CONFIG) as client:
        failures = await harvest(
            client, [server.url("/sia")], targets, search_format="image/fits", download_to=out
        ).run()
    assert failures == []
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len([p for p in written if p.suffix == ".fits"]) == 4
    assert all(p.is_relative_to(out) for p in written)
    assert all(len(p.name) <= 120 for p in written)
    assert not any(p.name.upper().startswith("CON.") for p in written)


async def test_single_values_are_not_taken_apart(server: LocalServer, tmp_path: Path):
    MiniSky(server, per_search=1)
    async with VOClient(CONFIG) as client:
        items = [
            i
            async for i in harvest(
                client,
                server.url("/sia"),
                (10.0, 20.0),
                keep_formats="image/fits",
                download_to=tmp_path,
            )
        ]
    assert [(i.kind, i.ok) for i in items] == [("search", True), ("download", True)]


@pytest.mark.parametrize(
    ("targets", "message"),
    [(Path("/nonexistent/targets.txt"), "can't read the targets file"), (["10"], "one number")],
)
async def test_bad_targets_are_parameter_errors(server: LocalServer, targets, message):
    MiniSky(server, per_search=1)
    async with VOClient(CONFIG) as client:
        with pytest.raises(ParameterError, match=message):
            await harvest(client, [server.url("/sia")], targets).run()


async def test_services_on_one_host_get_distinct_labels(server: LocalServer):
    MiniSky(server, per_search=1)
    server.route("GET", "/sia-copy", server._routes[("GET", "/sia")])
    async with VOClient(CONFIG) as client:
        run = harvest(client, [server.url("/sia"), server.url("/sia-copy")], [(10.0, 20.0)])
        items = [i async for i in run]
    assert len({i.service for i in items}) == 2
    assert len(run.totals) == 2 and all(t.searches == 1 for t in run.totals.values())


async def test_one_directory_one_harvest_at_a_time(server: LocalServer, tmp_path: Path):
    from voharvest.harvesting import JournalError

    sky = MiniSky(server, per_search=1, image_size=200_000, chunk_delay=0.05)
    async with VOClient(CONFIG) as client:
        first = harvest(
            client,
            [server.url("/sia")],
            [(10.0, 20.0)],
            search_format="image/fits",
            download_to=tmp_path,
        )
        running = asyncio.ensure_future(first.run())
        while not sky.fetches:  # noqa: ASYNC110 (a server on this loop)
            await asyncio.sleep(0.01)
        with pytest.raises(JournalError, match="another harvest"):
            await harvest(client, [server.url("/sia")], [(10.0, 20.0)], download_to=tmp_path).run()
        assert await running == []


async def test_a_run_stopped_by_bad_input_is_not_complete(server: LocalServer, tmp_path: Path):
    from voharvest.harvesting.manifest import status

    MiniSky(server, per_search=1)
    listing = tmp_path / "targets.txt"
    listing.write_text("10 20\n5\n")
    out = tmp_path / "out"
    async with VOClient(CONFIG) as client:
        with pytest.raises(ParameterError, match=r"targets\.txt:2"):
            await harvest(client, [server.url("/sia")], listing, download_to=out).run()
    assert not status(out).complete


async def test_the_manifest_lists_every_sighting_in_csv_and_votable(
    server: LocalServer, tmp_path: Path
):
    import csv

    from astropy.io.votable import parse_single_table

    from voharvest.harvesting.manifest import write_manifest

    sky = MiniSky(server, per_search=1, shared=True)
    sky.title = "Odd <title> & co {name}"
    async with VOClient(CONFIG) as client:
        await harvest(
            client, [server.url("/sia")], TARGETS, search_format="image/fits", download_to=tmp_path
        ).run()
    csv_path, vot_path = write_manifest(tmp_path)
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    # One file, seen by three searches: three sightings, one path.
    assert len(rows) == 3 and len({r["path"] for r in rows}) == 1
    assert {r["target"] for r in rows} == {
        "10.00000 +20.00000",
        "11.00000 +21.00000",
        "12.00000 +22.00000",
    }
    table = parse_single_table(vot_path).to_table()
    assert len(table) == 3
    assert list(table["state"]) == ["done"] * 3
    assert table["bytes"][0] == (tmp_path / rows[0]["path"]).stat().st_size
    assert table["title"][0].startswith("Odd <title> & co")
    assert table["ra"].unit == "deg"


def test_manifest_cells_are_always_well_formed_xml():
    from voharvest.harvesting.manifest import HARVEST_COLUMNS

    def _cell(name: str, value: object) -> str:
        return HARVEST_COLUMNS[name].cell(value)

    assert _cell("title", "a\x07b<c>&") == "<TD>a\ufffdb&lt;c&gt;&amp;</TD>"
    assert _cell("bytes", None) == "<TD/>"
    assert _cell("ra", 1.5) == "<TD>1.5</TD>"
    assert _cell("partition", 2**31) == "<TD/>"  # (an int has 32 bits)
    assert _cell("partition", "7") == "<TD>7</TD>"
