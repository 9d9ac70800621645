"""The downloads of a discovery, journaled: killed with SIGKILL and run again, no
search is repeated and no file done is fetched again; the manifest it writes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from tests import votlint
from tests.client.test_discover import TARGETS, LittleVO
from tests.servers import LocalServer
from voharvest import ClientConfig, RegistryEndpoint, RetryPolicy, VOClient
from voharvest._discovery import download
from voharvest._discovery_downloads import MANIFEST_COLUMNS, write_manifest
from voharvest._discovery_journal import DiscoveryJournal
from voharvest._exceptions import ParameterError

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from voharvest import ClientConfig, HostPolicy, RegistryEndpoint, RetryPolicy, VOClient
    from voharvest._discovery import download
    from voharvest._discovery_journal import DiscoveryJournal

    async def main(registry, journal, out):
        config = ClientConfig(
            registries=(RegistryEndpoint(registry),),
            retry=RetryPolicy(attempts=1),
            # Unhurried by politeness: the child only has to get to the hang.
            host=HostPolicy(rate=float("inf")),
        )
        async with VOClient(config) as client:
            result = await client.discover(%r, size=0.1, journal=journal)
            files = await DiscoveryJournal(journal).open()
            await download(client, result, out, journal=files)

    asyncio.run(main(*sys.argv[1:]))
    """
) % (TARGETS,)


def files_done(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            query = "SELECT COUNT(*) FROM files WHERE state = 'done'"
            return int(db.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def config(server: LocalServer) -> ClientConfig:
    return ClientConfig(
        registries=(RegistryEndpoint(server.url("/reg/tap")),), retry=RetryPolicy(attempts=1)
    )


async def test_a_killed_discovery_download_fetches_only_what_was_not_done(
    server: LocalServer, tmp_path: Path
) -> None:
    vo = LittleVO(server, batches=True)
    vo.serve_data()
    vo.hang_file = "sia1/200_-30.fits"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    journal, out = tmp_path / "discovery.sqlite", tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), server.url("/reg/tap"), str(journal), str(out), env=env
    )
    try:
        # Six datasets: five files done, the sixth hangs.
        for _ in range(600):
            if files_done(journal) == 5:
                break
            await asyncio.sleep(0.05)
        assert files_done(journal) == 5
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    before = len(server.hits)
    vo.hang_file = None

    async with VOClient(config(server)) as client:
        result = await client.discover(TARGETS, size=0.1, journal=journal)
        files = await DiscoveryJournal(journal).open()
        try:
            fetched = await download(client, result, out, journal=files)
            assert files.files_kept == 5
        finally:
            await files.close()
    # No search again, and only the file that had not come.
    assert [h.path for h in server.hits[before:]] == ["/data/sia1/200_-30.fits"]
    assert (result.requests, result.replayed) == (0, 10)
    paths = [p for _, p in fetched]
    assert all(isinstance(p, Path) and p.stat().st_size == 2880 for p in paths), paths
    assert len(paths) == len(set(paths)) == 6
    with sqlite3.connect(journal) as db:
        states = db.execute("SELECT state, path, bytes FROM files").fetchall()
        services = dict(db.execute("SELECT ivoid || '#' || kind, status FROM services"))
    assert sorted(states) == sorted(("done", str(p), 2880) for p in paths)
    assert services == {
        "ivo://x/obscore#obscore": "queried",
        "ivo://x/sia2#sia2": "queried",
        "ivo://x/sia1#sia": "queried",
        "ivo://x/north#sia": "queried",
    }


async def test_a_file_done_but_gone_from_the_disk_is_fetched_again(
    server: LocalServer, tmp_path: Path
) -> None:
    vo = LittleVO(server, batches=True)
    vo.serve_data()
    async with VOClient(config(server)) as client:
        result = await client.discover(TARGETS[:1], size=0.1)
        files = await DiscoveryJournal(tmp_path / "j.sqlite").open()
        try:
            first = await download(client, result, tmp_path / "out", journal=files)
            (gone, _), *_ = [(p, d) for d, p in first if isinstance(p, Path)]
            gone.unlink()
            again = await download(client, result, tmp_path / "out", journal=files)
            assert files.files_kept == len(first) - 1
            with pytest.raises(ParameterError, match="done or failed"):
                await files.set_file("http://x", "pending")
        finally:
            await files.close()
    assert [p for _, p in again] == [p for _, p in first]
    assert gone.exists()


async def test_the_manifest_lists_each_dataset_with_its_origins(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vo = LittleVO(server, batches=True)
    vo.serve_data()
    vo.hang_file = None
    async with VOClient(config(server)) as client:
        result = await client.discover([(*TARGETS[0], "first"), TARGETS[2]], size=0.1)
        fetched = await download(client, result, tmp_path, formats=["image/fits"])
    # One dataset left out, as --keep would: "not fetched".
    fetched = [(d, p) for d, p in fetched if "sia1/200" not in d.access_url]
    written = await asyncio.to_thread(write_manifest, result, tmp_path, fetched, kept=2)
    manifest, provenance = written
    assert [p.name for p in written] == ["manifest.xml", "provenance.json"]
    assert not list(tmp_path.glob("*.part"))
    assert votlint.judge([manifest]) == {}
    from astropy.io.votable import parse_single_table

    table = parse_single_table(str(manifest)).to_table()
    assert tuple(table.colnames) == MANIFEST_COLUMNS
    assert len(table) == len(result.datasets) == 4
    rows = {row["access_url"]: row for row in table}
    both = rows[server.url("/data/10_10.fits")]
    assert (both["targets"], both["target_ids"]) == ("first", "0")
    assert both["services"] == "ivo://x/obscore#obscore ivo://x/sia2#sia2"
    assert (both["state"], both["bytes"]) == ("done", 2880)
    assert Path(both["path"]).parent.name == "first"
    assert sorted(table["state"]) == ["done", "done", "done", "not fetched"]
    report = json.loads(provenance.read_text())
    assert report["downloads"] == {"done": 3, "failed": 0, "not_fetched": 1, "kept": 2}
    assert {s["ivoid"] for s in report["services"]} == {
        "ivo://x/obscore", "ivo://x/sia2", "ivo://x/sia1", "ivo://x/north"
    }  # fmt: skip

    # A manifest that fails midway leaves the last one whole, and no .part.
    before = manifest.read_bytes()

    def broken(self: object, row: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("voharvest.harvesting.manifest.VOTableRows.write", broken)
    with pytest.raises(OSError, match="disk full"):
        write_manifest(result, tmp_path, fetched)
    assert manifest.read_bytes() == before
    assert not list(tmp_path.glob("*.part"))
