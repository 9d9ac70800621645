"""Journals of earlier versions resume: their keys, their names and their files are kept."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.harvest.minisky import MiniSky
from tests.servers import LocalServer
from voharvest import ClientConfig, HostPolicy, ParameterError, RetryPolicy, VOClient
from voharvest.harvesting import JOURNAL_NAME, HarvestOptions, harvest, open_readonly
from voharvest.harvesting._journal import Journal
from voharvest.harvesting._schema import MIGRATIONS
from voharvest.harvesting.manifest import _MANIFEST_QUERY, manifest_rows

CONFIG = ClientConfig(
    retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02, jitter=0.0),
    host=HostPolicy(rate=math.inf, concurrency=8),
)

# The journal as versions up to 0.x wrote it (no user_version): a DataLink record whose
# cutout depends on the target was made unique by a fragment on its URL.
OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE searches (service TEXT NOT NULL, target TEXT NOT NULL, target_label TEXT,
    ra REAL, dec REAL, state TEXT NOT NULL, records INTEGER NOT NULL DEFAULT 0,
    overflow INTEGER NOT NULL DEFAULT 0, error TEXT, updated REAL NOT NULL,
    PRIMARY KEY (service, target));
CREATE TABLE records (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE, path TEXT NOT NULL,
    service TEXT NOT NULL, target TEXT NOT NULL, target_label TEXT, title TEXT, format TEXT,
    announced_size INTEGER, ra REAL, dec REAL, state TEXT NOT NULL, bytes INTEGER, error TEXT,
    updated REAL NOT NULL, kind TEXT NOT NULL DEFAULT 'file', parent INTEGER, via TEXT,
    mode TEXT, region TEXT, preview TEXT);
CREATE INDEX records_state ON records (state, id);
CREATE TABLE sightings (url TEXT NOT NULL, service TEXT NOT NULL, target TEXT NOT NULL,
    PRIMARY KEY (url, service, target));
INSERT INTO meta VALUES ('options', '{"size": 0.1}');
INSERT INTO searches VALUES ('sia2 http://h/sia2', 'A', 'A', 1.0, 2.0, 'done', 1, 0, NULL, 0);
INSERT INTO searches VALUES ('sia2 http://h/sia2', 'B', 'B', 3.0, 4.0, 'done', 1, 0, NULL, 0);
INSERT INTO records (url, path, service, target, target_label, state, updated, kind) VALUES
    ('http://h/dl?ID=x#voharvest-target=A', 'h-abc123/A/x', 'sia2 http://h/sia2', 'A', 'A',
     'pending', 0, 'datalink'),
    ('http://h/dl?ID=x#voharvest-target=B', 'h-abc123/B/x', 'sia2 http://h/sia2', 'B', 'B',
     'failed', 0, 'datalink'),
    ('http://h/img/y.fits', 'h-abc123/A/y-0123456789.fits', 'sia2 http://h/sia2', 'A', 'A',
     'done', 0, 'file');
INSERT INTO sightings VALUES ('http://h/dl?ID=x#voharvest-target=A', 'sia2 http://h/sia2', 'A');
INSERT INTO sightings VALUES ('http://h/dl?ID=x#voharvest-target=B', 'sia2 http://h/sia2', 'B');
INSERT INTO sightings VALUES ('http://h/img/y.fits', 'sia2 http://h/sia2', 'A');
"""


async def test_an_old_journal_keys_its_cutout_records_by_url_and_target(tmp_path: Path):
    with sqlite3.connect(tmp_path / JOURNAL_NAME) as old:
        old.executescript(OLD_SCHEMA)
    old.close()
    journal = Journal(tmp_path)
    await journal.open({"size": 0.1})
    try:
        pending = await journal.unfinished(0, 10, 10)
        assert await journal.service_folders() == {"sia2 http://h/sia2": "h-abc123"}
    finally:
        await journal.close()
    # The URL is the DataLink document's again; the target it is cut for is a column.
    assert [(r.id, r.url, r.cut_for, r.path) for r in pending] == [
        (1, "http://h/dl?ID=x", "A", "h-abc123/A/x"),
        (2, "http://h/dl?ID=x", "B", "h-abc123/B/x"),
    ]
    assert pending[0].centre == (1.0, 2.0) and pending[1].centre == (3.0, 4.0)
    db = open_readonly(tmp_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert sorted(db.execute("SELECT url, target FROM sightings")) == [
            ("http://h/dl?ID=x", "A"),
            ("http://h/dl?ID=x", "B"),
            ("http://h/img/y.fits", "A"),
        ]
        # Each record still shows once in the manifest, with its own target.
        assert len(list(manifest_rows(db))) == 3
    finally:
        db.close()


async def test_a_journal_opened_twice_migrates_once(tmp_path: Path):
    for _ in range(2):
        journal = Journal(tmp_path)
        await journal.open({"size": 0.1})
        await journal.close()
    db = open_readonly(tmp_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        columns = [row[1] for row in db.execute("PRAGMA table_info(records)")]
        assert columns.count("url") == 1 and "cut_for" in columns
    finally:
        db.close()


async def test_a_resumed_harvest_keeps_the_folder_an_older_version_named(
    server: LocalServer, tmp_path: Path
):
    """Service folders had a 6-digit hash before names had one scheme: a harvest begun
    then goes on in the folder it began in, and finds the files it fetched there."""
    sky = MiniSky(server, per_search=1)
    out = tmp_path / "out"
    async with VOClient(CONFIG) as client:
        first = [i async for i in harvest(client, server.url("/sia"), [(10.0, 20.0)],
                                          search_format="image/fits", download_to=out)]  # fmt: skip
    assert [i for i in first if not i.ok] == []
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    old = folder.name[: -len("0123456789")] + "abc123"  # as the older version named it
    shutil.move(folder, out / old)
    with sqlite3.connect(out / JOURNAL_NAME) as db:
        db.execute("UPDATE records SET path = ? || substr(path, ?)", (old, len(folder.name) + 1))
        # An older version described its services without their folders.
        (described,) = db.execute("SELECT value FROM meta WHERE key = 'services'").fetchone()
        facts = {key: {k: v for k, v in one.items() if k != "folder"}
                 for key, one in json.loads(described).items()}  # fmt: skip
        db.execute("UPDATE meta SET value = ? WHERE key = 'services'", (json.dumps(facts),))
    db.close()
    fetched = sum(sky.fetches.values())
    async with VOClient(CONFIG) as client:
        again = [i async for i in harvest(client, server.url("/sia"), [(10.0, 20.0), (11.0, 21.0)],
                                          search_format="image/fits", download_to=out)]  # fmt: skip
    assert [i for i in again if not i.ok] == []
    assert [p.name for p in out.iterdir() if p.is_dir()] == [old]
    assert sorted(p.parent.name for p in (out / old).rglob("*.fits")) == [
        "010.00000+20.00000",
        "011.00000+21.00000",
    ]
    assert sum(sky.fetches.values()) == fetched + 1  # the new target's file only
    # The journal now says where the service's files go.
    with sqlite3.connect(out / JOURNAL_NAME) as db:
        (described,) = db.execute("SELECT value FROM meta WHERE key = 'services'").fetchone()
    db.close()
    assert [one["folder"] for one in json.loads(described).values()] == [old]


async def test_reading_a_journal_streams_with_a_small_cache_and_no_transient_index(
    tmp_path: Path,
):
    """Status and manifest read millions of rows in bounded memory: SQLite's page
    cache (which also bounds its in-memory GROUP BY sorting) is small, and the
    DataLink join uses the journal's own index, not one built for the query."""
    journal = Journal(tmp_path)
    await journal.open({"size": 0.1})
    assert journal._db is not None
    (writing,) = journal._db.execute("PRAGMA cache_size").fetchone()
    assert -1024 <= writing < 0  # the writer's too: its working set is the B-trees' paths
    await journal.close()
    db = open_readonly(tmp_path)
    try:
        (kib,) = db.execute("PRAGMA cache_size").fetchone()
        assert -512 <= kib < 0  # (KiB; SQLite's default is -2000)
        rows = manifest_rows(db)
        assert list(rows) == []
        plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + _MANIFEST_QUERY))
        assert "AUTOMATIC" not in plan and "records_parent" in plan
    finally:
        db.close()


async def test_an_old_journal_of_a_whole_degree_size_resumes_and_other_options_are_refused(
    tmp_path: Path,
):
    # The first journals wrote HarvestOptions(size=1) as the int 1, and formats in the
    # order given; today's view says 1.0 and sorts them.
    first = (
        '{"format": null, "formats": ["image/png", "image/fits"], "max_records": null, "size": 1}'
    )
    with sqlite3.connect(tmp_path / JOURNAL_NAME) as old:
        old.executescript(OLD_SCHEMA.replace('{"size": 0.1}', first))
    old.close()
    same = HarvestOptions(size=1, keep_formats=["image/png", "image/fits"])
    assert same.journal_view()["size"] == 1.0 and isinstance(same.journal_view()["size"], float)
    journal = Journal(tmp_path)
    await journal.open(same.journal_view())
    await journal.close()
    for other in (
        HarvestOptions(size=1.01, keep_formats=["image/png", "image/fits"]),
        HarvestOptions(size=1, keep_formats=["image/fits"]),
        HarvestOptions(size=1, keep_formats=["image/png", "image/fits"], max_records=3),
    ):
        journal = Journal(tmp_path)
        with pytest.raises(ParameterError, match="other options"):
            await journal.open(other.journal_view())
        await journal.close()
    db = open_readonly(tmp_path)
    try:  # what the first harvest wrote is kept
        assert db.execute("SELECT value FROM meta WHERE key = 'options'").fetchone() == (first,)
    finally:
        db.close()
