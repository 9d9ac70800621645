"""Harvests on a LocalCluster of two worker processes against VOFarm (in its own process).

A killed scheduler needs a scheduler in a process of its own: that test runs
the first harvest on a cluster of plain processes (``tests/dask/processes.py``).
Cutouts are harvested from LinkSky (SIA v2 + DataLink + SODA) in a thread.

Politeness is measured by the farm: its token buckets count every request
that came sooner than its host's limit allows, whichever worker sent it. Each
politeness test also runs a control without the cluster's gate, so it is seen
to fail when the limit is kept per worker only. Files are compared byte for
byte with what the farm serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from astropy.io import fits

from tests.dask.farm import FarmProcess
from tests.dask.processes import ProcessCluster
from tests.dask.tasks import requests_through_the_gate
from tests.linksky import FIELDS, PIXELS, LinkSky
from tests.servers import LocalServer
from voharvest import ClientConfig, Cutout, HostPolicy, ParameterError
from voharvest.dask import (
    PLUGIN_NAME,
    Coordinator,
    DaskHarvest,
    PartitionError,
    harvest_on_dask,
)
from voharvest.harvesting import HarvestOptions
from voharvest.harvesting.manifest import MANIFEST_COLUMNS, status
from voharvest.services import SIA2Service
from voharvest.testing import VOFarm, tile_by_id

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

IMAGE_BYTES = 16 * 1024
SKY = VOFarm(hosts=1, seed=0).sky  # the farm's images, for checking files byte for byte


def positions(count: int) -> list[tuple[float, float]]:
    """Distinct positions far apart (a golden-angle spiral): one image each."""
    out = []
    for j in range(count):
        z = -0.85 + 1.7 * (j + 0.5) / count
        out.append((round((j * 137.50776405) % 360.0, 6), round(math.degrees(math.asin(z)), 6)))
    return out


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    import dask

    # A worker that stops answering is restarted after 30 s, not Dask's default
    # 5 minutes (a CI run once lost one for 9 minutes; its partition then ran
    # again elsewhere, as it should, but the test waited all that time).
    with dask.config.set({"distributed.scheduler.worker-ttl": "30s"}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def dc(dask_client: Any) -> Any:
    dask_client.wait_for_workers(2, timeout=60)
    return dask_client


def manifest(root: Path) -> list[dict[str, str]]:
    """The combined manifest's rows; its VOTable twin says the same."""
    from astropy.io.votable import parse_single_table

    with (root / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    table = parse_single_table(root / "manifest.xml").to_table()
    if rows:
        assert table.colnames == list(rows[0])
    assert len(table) == len(rows)
    for row, twin in zip(rows, table, strict=True):
        assert int(twin["partition"]) == int(row["partition"])
        for name in ("url", "path", "state"):
            value = twin[name]
            assert ("" if value is None or value is np.ma.masked else str(value)) == row[name]
    return rows


def expected_bytes(url: str, image_bytes: int = IMAGE_BYTES) -> bytes:
    tile = tile_by_id(url.rsplit("/", 1)[-1].removesuffix(".fits"))
    return bytes(SKY.fits(tile, image_bytes, 16).read())


def verify(root: Path, rows: list[dict[str, str]], image_bytes: int = IMAGE_BYTES) -> int:
    """Every manifest row's file is whole; how many files."""
    for row in rows:
        assert row["state"] == "done", row
        assert (root / row["path"]).read_bytes() == expected_bytes(row["url"], image_bytes), row
    return len(rows)


def farm_paths(counters: dict[str, Any], key: str) -> dict[str, int]:
    """host:path -> count, over every host."""
    return {f"{host}:{path}": n for host, c in counters.items() for path, n in c[key].items()}


def test_the_rate_per_host_holds_for_the_cluster_as_a_whole(dc: Any, tmp_path: Path) -> None:
    config = ClientConfig(host=HostPolicy(rate=5, concurrency=4))
    farm_config = {
        "latency": 0.01,
        "rate_limit": 5.0,
        "images_per_search": 1,
        "formats": ["image/fits"],
        "image_bytes": IMAGE_BYTES,
    }
    targets = positions(8)
    with FarmProcess(hosts=3, **farm_config) as farm:
        urls = [host["sia1_url"] for host in farm.hosts]
        run = harvest_on_dask(
            dc, urls, targets, download_to=tmp_path / "out", size=0.05,
            search_format="image/fits", config=config, partitions=4,
        )  # fmt: skip
        items = list(run)
        gated = farm.counters()
        # The control: the same harvest over six of the targets, each worker polite on
        # its own only (it trips every host as soon as both workers start on it).
        control = harvest_on_dask(
            dc, urls, targets[:6], download_to=tmp_path / "control", size=0.05,
            search_format="image/fits", config=config, partitions=4, gate=False,
        )  # fmt: skip
        list(control)
        after = farm.counters()

    assert len({p.worker for p in run.partitions}) == 2, "both workers harvested"
    assert [h["rate_violations"] for h in gated.values()] == [0, 0, 0]
    assert all("429" not in h["statuses"] for h in gated.values())
    assert run.complete and not run.failed
    assert len(items) == 2 * 3 * 8 and all(item.ok for item in items)
    for origin, report in run.ledger.items():
        assert report["max_in_use"] <= 4, origin
    per_host = [h["requests"] for h in gated.values()]
    assert sorted(report["granted"] for report in run.ledger.values()) == sorted(per_host)
    assert verify(tmp_path / "out", manifest(tmp_path / "out")) == 3 * 8

    control_violations = sum(
        after[h]["rate_violations"] - gated[h]["rate_violations"] for h in after
    )
    assert control_violations > 0, "per-worker limits alone should trip the farm"


def farm_key(hosts: list[dict[str, Any]], url: str) -> str:
    """The key of ``farm_paths`` for an image URL."""
    base, _, path = url.partition("/images/")
    index = next(str(i) for i, h in enumerate(hosts) if h["base_url"] == base)
    return f"{index}:/images/{path}"


def slow_files(image_bytes: int, seconds: float) -> dict[str, Any]:
    """A farm serving one FITS per search, each taking ``seconds`` to send (time to kill)."""
    return {
        "latency": 0.01,
        "rate_limit": 20.0,
        "images_per_search": 1,
        "formats": ["image/fits"],
        "image_bytes": image_bytes,
        "bandwidth": int(image_bytes / seconds),
    }


def finals(out: Path) -> set[Path]:
    return set(out.glob("partitions/*/*/*/*.fits"))


def test_a_killed_worker_and_a_rerun_end_complete_with_nothing_fetched_twice(
    dc: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    image_bytes = 64 * 1024
    farm_config = slow_files(image_bytes, seconds=0.5)
    config = ClientConfig(host=HostPolicy(rate=20, concurrency=3))
    targets = positions(16)
    with FarmProcess(hosts=2, **farm_config) as farm:
        hosts = farm.hosts
        urls = [host["sia1_url"] for host in hosts]

        def harvest() -> Any:
            return harvest_on_dask(
                dc, urls, targets, download_to=out, size=0.05, search_format="image/fits",
                config=config, partitions=4,
            )  # fmt: skip

        first = harvest()
        items: list[Any] = []
        runner = threading.Thread(target=lambda: items.extend(first), daemon=True)
        runner.start()
        deadline = time.monotonic() + 60
        while len(finals(out)) < 6 and time.monotonic() < deadline and runner.is_alive():
            time.sleep(0.02)
        busy = [w for w, keys in dc.processing().items() if keys]
        assert busy, "no partition was running"
        pid = dc.run(os.getpid, workers=[busy[0]])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        on_disk_at_kill = finals(out)
        # GETs are counted as they arrive. (The farm counts a fetch "completed" only
        # after its last pause and write_eof: a file the client already has on disk
        # is not counted yet, and never is if its worker dies in that window.)
        at_kill = farm_paths(farm.counters(), "fetches")
        runner.join(120)
        assert not runner.is_alive()
        after_first = farm.counters()

        dc.wait_for_workers(2, timeout=60)
        second = harvest()
        rerun_items = list(second)
        after_second = farm.counters()

    assert 0 < len(on_disk_at_kill) < 2 * 16, "the kill came mid-run"
    assert second.complete and not second.failed
    rows = manifest(out)
    assert verify(out, rows, image_bytes) == 2 * 16
    assert len({row["url"] for row in rows}) == 2 * 16

    # The re-run fetched nothing and searched nothing: the first run (its
    # killed partition retried by Dask) had finished everything.
    assert farm_paths(after_second, "fetches") == farm_paths(after_first, "fetches")
    assert rerun_items == []
    # No file that was complete on disk at the kill was fetched again, nor any file
    # sent in full twice.
    fetched = farm_paths(after_second, "fetches")
    by_path = {out / row["path"]: row["url"] for row in rows}
    for path in on_disk_at_kill:
        key = farm_key(hosts, by_path[path])
        assert fetched[key] == at_kill[key] >= 1, path
    assert max(farm_paths(after_second, "completed").values()) == 1
    assert not list(out.rglob("*.part"))
    assert len(first.partitions) == 4


def test_a_killed_scheduler_and_a_rerun_on_another_cluster_finish_only_what_remains(
    dc: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    image_bytes = 64 * 1024
    farm_config = slow_files(image_bytes, seconds=0.25)
    config = ClientConfig(host=HostPolicy(rate=20, concurrency=3))
    targets = positions(16)
    with FarmProcess(hosts=2, **farm_config) as farm:
        urls = [host["sia1_url"] for host in farm.hosts]

        def harvest(client: Any) -> Any:
            return harvest_on_dask(
                client, urls, targets, download_to=out, size=0.05, search_format="image/fits",
                config=config, partitions=4,
            )  # fmt: skip

        with ProcessCluster(tmp_path / "cluster", workers=2) as cluster:
            first = harvest(cluster.client)
            outcome: dict[str, Any] = {}

            def drive() -> None:
                try:
                    outcome["items"] = list(first)
                except BaseException as exc:  # the driver is the test's, not the harvest's
                    outcome["error"] = exc

            runner = threading.Thread(target=drive, daemon=True)
            runner.start()
            deadline = time.monotonic() + 60
            while len(finals(out)) < 6 and time.monotonic() < deadline and runner.is_alive():
                time.sleep(0.02)
            assert runner.is_alive(), f"the first run ended before the kill: {outcome}"
            cluster.kill_scheduler()
            cluster.kill()  # the workers too: the whole cluster is lost
            runner.join(60)
            assert not runner.is_alive(), "the driver hung on the lost scheduler"
        # Every process of that cluster is dead: nothing on disk moves any more.
        at_kill = {path: path.read_bytes() for path in finals(out)}
        fetched_at_kill = farm_paths(farm.counters(), "fetches")
        journals_at_kill = sorted(out.glob("partitions/*/voharvest-journal.sqlite"))
        killed_status = [status(journal.parent) for journal in journals_at_kill]

        second = harvest(dc)
        list(second)
        fetched_after = farm_paths(farm.counters(), "fetches")

    # The first run's driver ended (no exception) with the unfinished partitions failed.
    assert "error" not in outcome, outcome
    assert not first.complete and first.failed
    for partition in first.failed:
        assert isinstance(partition.error, PartitionError), partition
        assert "scheduler" in str(partition.error), partition.error
    assert 0 < len(at_kill) < 2 * 16, "the kill came mid-run"
    # The journals of the partitions that had started open after the kill.
    assert journals_at_kill and not all(s.complete for s in killed_status)

    assert second.complete and not second.failed
    rows = manifest(out)
    assert verify(out, rows, image_bytes) == 2 * 16
    assert len({row["url"] for row in rows}) == 2 * 16
    assert {row["partition"] for row in rows} == {"0", "1", "2", "3"}
    for partition in range(4):
        assert status(out / "partitions" / f"{partition:04d}").complete
    # What was under a final name at the kill was whole, and was not fetched again.
    by_path = {out / row["path"]: row["url"] for row in rows}
    for path, content in at_kill.items():
        url = by_path[path]
        assert content == expected_bytes(url, image_bytes), path
        key = farm_key(farm.hosts, url)
        assert fetched_after[key] == fetched_at_kill[key], path
    # Files the kill interrupted, and those not begun, were fetched by the re-run.
    assert sum(fetched_after.values()) > sum(fetched_at_kill.values())
    assert not list(out.rglob("*.part"))


class PauseServer:
    """A host on 127.0.0.1 that logs when requests arrive and answers one with 429."""

    def __init__(self, throttle_at: int, retry_after: float) -> None:
        self.throttle_at = throttle_at
        self.retry_after = retry_after
        self.arrivals: list[float] = []
        self.throttled_at: float | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.time())
        if len(self.arrivals) == self.throttle_at:
            self.throttled_at = time.time()
            return web.Response(status=429, headers={"Retry-After": str(self.retry_after)})
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"

    def __enter__(self) -> PauseServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def during_pause(self) -> int:
        """Requests that arrived well inside the pause (none should)."""
        assert self.throttled_at is not None
        start, end = self.throttled_at + 0.3, self.throttled_at + self.retry_after - 0.1
        return sum(start < t < end for t in self.arrivals)


@pytest.mark.parametrize("gated", [True, False], ids=["gate", "control-without-gate"])
def test_a_retry_after_seen_by_one_worker_pauses_the_host_for_all(dc: Any, gated: bool) -> None:
    dc.register_plugin(Coordinator(), name=PLUGIN_NAME)
    workers = sorted(dc.scheduler_info()["workers"])
    with PauseServer(throttle_at=8, retry_after=2.0) as server:
        futures = [
            dc.submit(requests_through_the_gate, server.url, 12, 8.0, gated, workers=[w],
                      pure=False, allow_other_workers=False)
            for w in workers
        ]  # fmt: skip
        outcomes = dc.gather(futures)
    assert server.throttled_at is not None
    assert all(o == "ok" for one in outcomes for o in one), outcomes
    if gated:
        assert server.during_pause() == 0, server.arrivals
    else:
        assert server.during_pause() > 0, "the control should go on during the pause"


def test_object_storage_through_fsspec_uploads_each_file_once(dc: Any, tmp_path: Path) -> None:
    remote = tmp_path / "bucket"
    staging = tmp_path / "staging"
    farm_config = {"images_per_search": 1, "formats": ["image/fits"], "image_bytes": IMAGE_BYTES}
    targets = positions(8)

    def harvest(urls: list[str]) -> Any:
        run = harvest_on_dask(
            dc, urls, targets, download_to=f"file://{remote}", staging=staging,
            size=0.05, search_format="image/fits", partitions=2,
        )  # fmt: skip
        list(run)
        return run

    with FarmProcess(hosts=1, **farm_config) as farm:
        urls = [host["sia1_url"] for host in farm.hosts]
        first = harvest(urls)
        fetched = farm_paths(farm.counters(), "fetches")
        second = harvest(urls)  # staging intact
        shutil.rmtree(staging)  # as if every worker's machine were gone
        third = harvest(urls)
        assert farm_paths(farm.counters(), "fetches") == fetched

    assert first.complete and second.complete and third.complete
    assert sum(p.uploaded for p in first.partitions) == 8
    assert sum(p.uploaded for p in second.partitions + third.partitions) == 0
    assert sum(p.lost for p in third.partitions) == 0
    assert verify(remote, manifest(remote)) == 8
    assert not list(staging.rglob("*.fits")), "staging keeps nothing once uploaded"
    assert not list(remote.rglob("*.part"))


def test_a_rerun_must_keep_the_partition_count(dc: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = harvest_on_dask(dc, ["http://127.0.0.1:9/sia"], [], download_to=out, partitions=3)
    list(run)
    assert run.complete and len(run.partitions) == 3
    with pytest.raises(ParameterError, match="3 partitions"):
        list(harvest_on_dask(dc, ["http://127.0.0.1:9/sia"], [], download_to=out, partitions=4))
    with pytest.raises(ParameterError, match="other options"):
        list(harvest_on_dask(dc, ["http://127.0.0.1:9/sia"], [], download_to=out, size=0.5))


def test_a_rerun_with_the_same_size_given_another_way_resumes(dc: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    nowhere = ["http://127.0.0.1:9/sia"]
    # 111 arcmin is 1.8499999999999999 deg once converted, 1.85 typed: the same size.
    list(harvest_on_dask(dc, nowhere, [], download_to=out, partitions=2, size="111arcmin"))
    again = harvest_on_dask(dc, nowhere, [], download_to=out, partitions=2, size=1.85)
    list(again)
    assert again.complete
    with pytest.raises(ParameterError, match="other options"):
        list(harvest_on_dask(dc, nowhere, [], download_to=out, partitions=2, size=1.86))


class ServerThread:
    """A ``tests.servers.LocalServer`` on 127.0.0.1 in a thread of its own (the test blocks)."""

    def __init__(self) -> None:
        self.server = LocalServer()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def test_cutouts_on_dask_reach_every_partition_and_the_combined_manifest(
    dc: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = ClientConfig(host=HostPolicy(rate=50, concurrency=4))
    targets = [FIELDS["m51_r"], FIELDS["m101_r"]]  # M51 holds two fields, M101 one

    with ServerThread() as server:
        sky = LinkSky(server)
        service = SIA2Service(None, sky.url("/sia2"))  # type: ignore[arg-type]

        def harvest(**options: Any) -> Any:
            run = harvest_on_dask(
                dc, [service], targets, download_to=out, size=0.1, search_format="image/fits",
                config=config, partitions=2, sky_cell=None, **options,
            )  # fmt: skip
            return run, [item for item in run if not item.ok]

        first, failed = harvest(cutout="1arcmin", cutout_fallback="skip")
        fetched = dict(sky.fetches)
        again, failed_again = harvest(cutout=Cutout.circle(1 / 60), cutout_fallback="skip")
        for other in ({"cutout": "2arcmin", "cutout_fallback": "skip"}, {"cutout": "1arcmin"}, {}):
            with pytest.raises(ParameterError, match="other options"):
                harvest(**other)
        assert dict(sky.fetches) == fetched, "the refused re-runs ran nothing"

    assert failed == [] and failed_again == []
    assert first.complete and again.complete
    assert fetched["/soda"] == 3 and not any(name.endswith(".fits") for name in fetched)
    assert sum(len(p.items) for p in again.partitions) == 0, "the re-run found it all done"

    plan = json.loads((out / "voharvest-dask.json").read_text())
    assert plan["options"]["cutout"]["radius"] == pytest.approx(1 / 60)
    assert plan["options"]["cutout_fallback"] == "skip"
    for partition in range(2):  # the options reached the workers' journals
        journal = out / "partitions" / f"{partition:04d}" / "voharvest-journal.sqlite"
        with contextlib.closing(sqlite3.connect(journal)) as db:
            (options,) = db.execute("SELECT value FROM meta WHERE key = 'options'").fetchone()
        assert json.loads(options) == plan["options"]

    rows = manifest(out)
    assert len(rows) == 3 and {row["partition"] for row in rows} <= {"0", "1"}
    assert set(rows[0]) == {"partition", *MANIFEST_COLUMNS}
    for row in rows:
        assert row["state"] == "done" and row["mode"] == "cutout", row
        shape, ra, dec, radius = row["region"].split()
        assert shape == "CIRCLE" and float(radius) == pytest.approx(1 / 60), row
        assert (float(ra), float(dec)) in targets
        assert row["via"].startswith(sky.url("/dl?ID=")) and row["preview"].endswith(".png")
        with fits.open(out / row["path"]) as hdus:
            assert max(hdus[0].data.shape) < PIXELS, "a cutout, not the full frame"


def test_the_combined_manifest_takes_columns_by_name(tmp_path: Path) -> None:
    """A partition's manifest from before mode/region/via/preview still lines up."""
    out = tmp_path / "out"
    old = ["service", "target", "url", "title", "format", "ra", "dec", "announced_size",
           "state", "path", "bytes", "error"]  # fmt: skip
    new = list(reversed(MANIFEST_COLUMNS))  # any order
    for partition, header in enumerate((old, new)):
        folder = out / "partitions" / f"{partition:04d}"
        folder.mkdir(parents=True)
        values = {name: f"{name}-{partition}" for name in header}
        with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([header, [values[name] for name in header]])
    run = DaskHarvest(None, ["http://127.0.0.1:9/sia"], [], HarvestOptions(), download_to=out)

    run._combine(3)  # partition 2 has no manifest (it never ended)

    rows = manifest(out)
    assert list(rows[0]) == ["partition", *MANIFEST_COLUMNS]
    assert [row["partition"] for row in rows] == ["0", "1"]
    assert rows[0]["url"] == "url-0" and rows[0]["path"] == "partitions/0000/path-0"
    assert [rows[0][c] for c in ("mode", "region", "via", "preview")] == ["", "", "", ""]
    for name in MANIFEST_COLUMNS:
        expected = f"partitions/0001/{name}-1" if name == "path" else f"{name}-1"
        assert rows[1][name] == expected
