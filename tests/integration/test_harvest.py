"""A harvest over several positions from services found in DaCHS's registry.

SIA v1 (two hosts, one with a FORMAT preset), SIA v1 UV and the site-wide SIA
v2 service (whose infrared rows are DataLink documents, resolved to their
FITS files), around five positions (one where there is nothing): every file
comes, is a FITS whose WCS holds its target, is journaled, and a second run
fetches nothing again. Then the README's command line, against DaCHS.
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from astropy.coordinates import SkyCoord

from tests.cli.inprocess import voharvest_here_sync
from tests.integration.conftest import Dachs
from tests.integration.dachs.make_fits import TARGETS
from tests.integration.test_sia import assert_fits_covers
from voharvest import harvest
from voharvest.client import VOClient
from voharvest.harvesting.manifest import status

LABELS = ("M51", "M101", "M87", "M31")
NOWHERE = (0.0, -60.0)
#: FITS files expected per service for the targets above (size 0.2 degrees):
#: SDSS-like images exist for M51, M101, M87 (g and r); UVOT-like for M51,
#: M101, M31; DataLink infrared ones for M51 and M87 (J and Ks); the SIA v2
#: service has all three collections (FORMAT=image/fits and DataLink's type).
EXPECTED_FILES = {
    "VOH SDSS": {"M51": 2, "M101": 2, "M87": 2},
    "VOH SDSS mir": {"M51": 2, "M101": 2, "M87": 2},
    "VOH UVOT": {"M51": 1, "M101": 1, "M31": 1},
    "VOH SIAv2": {"M51": 3 + 2, "M101": 3, "M87": 2 + 2, "M31": 1},
}
#: Different files among them: the mirror and the SIA v2 service lead to the
#: same getproduct URLs as the two SIA v1 services (6 SDSS-like, 3 UVOT-like),
#: and the SIA v2 service's DataLink records to 4 infrared FITS files.
UNIQUE_FILES = 6 + 3 + 4
#: The infrared files, the #this links of the DataLink documents.
DATALINK_FILES = sorted(
    f"/getproduct/voharvest/dlimg/data/dlimg_{target}_{band}.fits"
    for target in ("m51", "m87")
    for band in ("J", "Ks")
)


def targets() -> list[object]:
    labelled: list[object] = [(*TARGETS[label], label) for label in LABELS]
    return [*labelled, SkyCoord(*NOWHERE, unit="deg")]


async def services(client: VOClient) -> list[object]:
    optical = await client.regsearch(servicetype="sia", waveband="optical", keywords=["sloan"])
    uv = await client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])
    site = await client.regsearch(servicetype="sia2", keywords=["swift"])
    found = [*optical, *uv, *site]
    assert sorted(r.short_name for r in found) == sorted(EXPECTED_FILES)
    return found


async def test_harvest_several_positions_with_its_journal(client: VOClient, tmp_path: Path) -> None:
    out = tmp_path / "out"
    chosen = await services(client)
    items = [
        item
        async for item in harvest(
            client, chosen, targets(), size=0.2, search_format="image/fits", download_to=out
        )
    ]
    failed = [item for item in items if not item.ok]
    assert failed == []
    searches = [item for item in items if item.kind == "search"]
    downloads = [item for item in items if item.kind == "download"]
    assert len(searches) == len(EXPECTED_FILES) * (len(LABELS) + 1)

    found: dict[str, dict[str, int]] = {}
    for item in searches:
        if item.records:
            found.setdefault(item.service, {})[item.target] = item.records
    assert found == EXPECTED_FILES
    # Services of one site find the same files: each is fetched once.
    assert len(downloads) == len({item.url for item in downloads}) == UNIQUE_FILES
    # DataLink records: their FITS files are fetched, never the documents.
    linked = sorted(urlsplit(item.url).path for item in downloads if "/dlimg/" in item.url)
    assert linked == DATALINK_FILES
    assert all(item.service == "VOH SIAv2" for item in downloads if "/dlimg/" in item.url)

    for item in downloads:
        assert item.path is not None and item.path.is_file()
        assert out in item.path.parents
        assert item.bytes == item.path.stat().st_size > 0
        header = assert_fits_covers(item.path, SkyCoord(*TARGETS[item.target], unit="deg"))
        assert header["OBJECT"] == item.target

    summary = await asyncio.to_thread(status, out)
    total = summary.total
    assert summary.complete
    assert total.searches_done == len(searches) and total.searches_failed == 0
    assert total.records_done == len(downloads)
    assert total.records_pending == total.records_failed == 0
    assert total.bytes == sum(item.bytes for item in downloads)
    assert summary.errors == []

    # Run it again: everything is in the journal, nothing is asked or fetched.
    before = sum(one.requests for one in client.stats.values())
    again = [
        item
        async for item in harvest(
            client, chosen, targets(), size=0.2, search_format="image/fits", download_to=out
        )
    ]
    assert [item for item in again if not item.ok] == []
    assert [item for item in again if item.kind == "download" and not item.found_on_disk] == []
    assert sum(one.requests for one in client.stats.values()) == before
    assert (await asyncio.to_thread(status, out)).total.records_done == len(downloads)


def voharvest_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voharvest", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_command_against_dachs(
    dachs: Dachs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m51"
    ra, dec = TARGETS["M51"]
    harvested = voharvest_cli(
        "harvest",
        "--target",
        f"{ra} {dec} M51",
        "--servicetype",
        "sia",
        "--waveband",
        "optical",
        "--keywords",
        "sloan",
        "--size",
        "0.2",
        "--format",
        "image/fits",
        "--out",
        str(out),
        "--registry",
        dachs.tap,
        "--sesame",
        "http://127.0.0.1:9/sesame",
        "--no-progress",
    )
    assert harvested.returncode == 0, harvested.stderr
    # Both "sloan" services (two hosts) found the g and r images of M51: the
    # same two files, fetched once; the manifest lists all four sightings.
    files = sorted(out.rglob("*.fits"))
    assert [path.name[: len("VOH_SDSS_M51_g")] for path in files] == [
        "VOH_SDSS_M51_g",
        "VOH_SDSS_M51_r",
    ]
    for path in files:
        assert_fits_covers(path, SkyCoord(ra, dec, unit="deg"))
    with (out / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        sightings = list(csv.DictReader(handle))
    assert len(sightings) == 4
    assert {row["state"] for row in sightings} == {"done"}
    assert len({row["service"] for row in sightings}) == 2

    # main() in this process: the README's command above was the real process.
    code, shown, err = voharvest_here_sync(capsys, "status", out)
    assert code == 0, shown + err
    assert "total: searches 2 done, 0 failed; files 2 done, 0 pending, 0 failed" in shown
    assert shown.rstrip().endswith("complete")


async def test_a_cutout_harvest_on_dachs(client: VOClient, dachs: Dachs, tmp_path: Path) -> None:
    """SIA v2 site-wide, cutouts of 1.5 arcmin around M51 and M87 through DaCHS's SODA.

    With ``cutout_fallback="skip"`` only the DataLink (infrared) records are
    taken, each as a cutout; with ``"full"`` the others come as full frames,
    and the manifest says which is which. The bytes saved are printed (the
    README and docs/datalink.md quote them).
    """
    sia2 = client.sia_service(dachs.sia2, version=2)
    labelled = [(*TARGETS[label], label) for label in ("M51", "M87")]
    out = tmp_path / "cut"
    items = [
        item
        async for item in harvest(
            client, [sia2], labelled, size=0.2, search_format="image/fits", download_to=out,
            cutout="1.5arcmin", cutout_fallback="skip",
        )
    ]  # fmt: skip
    assert [item for item in items if not item.ok] == []
    files = [item for item in items if item.kind == "download" and item.path is not None]
    assert len(files) == 4  # J and Ks at M51 and M87
    with _manifest(out) as handle:
        every = list(csv.DictReader(handle))
    # The SDSS/UVOT rows lead to DaCHS's ObsCore DataLink documents, which offer
    # no SODA service: skipped, and the manifest says why.
    skipped = [row for row in every if row["state"] == "skipped"]
    assert len(skipped) == 5 and all("no cutout service" in row["error"] for row in skipped)
    rows = [row for row in every if row["state"] != "skipped"]
    assert len(rows) == 4 and {row["mode"] for row in rows} == {"cutout"}
    full_bytes = 0
    for item in files:
        assert item.path is not None and "_cutout" in item.path.name
        header = assert_fits_covers(item.path, SkyCoord(*TARGETS[item.target], unit="deg"))
        assert header["OBJECT"] == item.target
        row = next(r for r in rows if r["path"] and out / r["path"] == item.path)
        assert row["region"].startswith("CIRCLE ") and "/dl/dlmeta?ID=" in row["via"]
        assert row["url"].startswith(f"{dachs.server_url}/voharvest/dlimg/q/dl/dlget?")
        assert item.bytes < FULL_FRAME_BYTES / 10
        full_bytes += FULL_FRAME_BYTES
    cut_bytes = sum(item.bytes for item in files)
    print(
        f"\ncutout harvest on DaCHS: 4 cutouts of 1.5 arcmin, {cut_bytes} bytes "
        f"instead of {full_bytes} for the full frames ({cut_bytes / full_bytes:.1%})"
    )
    summary = await asyncio.to_thread(status, out)
    assert summary.complete and summary.total.records_skipped == 5

    everything = tmp_path / "full"
    more = [
        item
        async for item in harvest(
            client, [sia2], labelled, size=0.2, search_format="image/fits", download_to=everything,
            cutout="1.5arcmin",
        )
    ]  # fmt: skip
    assert [item for item in more if not item.ok] == []
    with _manifest(everything) as handle:
        modes = sorted(row["mode"] for row in csv.DictReader(handle))
    assert modes == ["cutout"] * 4 + ["full"] * 5


#: The infrared full frames of the DataLink collection: 800 x 800 float32 and a header.
FULL_FRAME_BYTES = 2_563_200


def _manifest(out: Path):  # type: ignore[no-untyped-def]
    from voharvest.harvesting.manifest import write_manifest

    csv_path, _ = write_manifest(out)
    return csv_path.open()
