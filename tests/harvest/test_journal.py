"""The journal's grouped writes: one transaction per batch, each call undone alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from voharvest.harvesting import JournalError
from voharvest.harvesting._journal import FoundRecord, Journal

SERVICE = "sia1 http://127.0.0.1/sia"


def found(index: int, title: object = None) -> FoundRecord:
    return FoundRecord(
        url=f"http://127.0.0.1/img/{index}.fits",
        path=f"svc/t{index}/img{index}.fits",
        title=title if title is not None else f"image {index}",
        format="image/fits",
        announced_size=100,
        ra=1.0,
        dec=2.0,
    )


def rows(directory: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(directory / "voharvest-journal.sqlite") as db:
        return db.execute(query).fetchall()


async def test_calls_made_together_share_one_commit(tmp_path: Path):
    journal = Journal(tmp_path)
    await journal.open({"size": 0.1})
    try:
        before = journal.commits
        results = await asyncio.gather(
            *(
                journal.search_done(SERVICE, f"t{i}", f"t{i}", (1.0, 2.0), [found(i)], False)
                for i in range(40)
            )
        )
        assert journal.commits == before + 1
        ids = [new.id for batch in results for new in batch]
        assert len(set(ids)) == 40
        await asyncio.gather(*(journal.download_done(i, 100) for i in ids))
        assert journal.commits == before + 2
    finally:
        await journal.close()
    assert rows(tmp_path, "SELECT count(*) FROM searches WHERE state = 'done'") == [(40,)]
    assert rows(tmp_path, "SELECT count(*) FROM records WHERE state = 'done'") == [(40,)]


async def test_a_failing_call_is_undone_alone(tmp_path: Path):
    journal = Journal(tmp_path)
    await journal.open({"size": 0.1})
    try:
        # The second search's second record can't be stored (a title SQLite can't bind).
        outcomes = await asyncio.gather(
            journal.search_done(SERVICE, "t0", "t0", (1.0, 2.0), [found(0)], False),
            journal.search_done(
                SERVICE, "t1", "t1", (1.0, 2.0), [found(1), found(2, title=["?"])], False
            ),
            journal.search_done(SERVICE, "t3", "t3", (1.0, 2.0), [found(3)], False),
            return_exceptions=True,
        )
    finally:
        await journal.close()
    assert isinstance(outcomes[1], JournalError)
    assert [len(o) for o in (outcomes[0], outcomes[2]) if isinstance(o, list)] == [1, 1]
    assert rows(tmp_path, "SELECT target FROM searches ORDER BY target") == [("t0",), ("t3",)]
    # Nothing of the failed call stayed, not even its first record.
    assert rows(tmp_path, "SELECT url FROM records ORDER BY id") == [
        ("http://127.0.0.1/img/0.fits",),
        ("http://127.0.0.1/img/3.fits",),
    ]


async def test_closing_commits_what_is_queued(tmp_path: Path):
    journal = Journal(tmp_path)
    await journal.open({"size": 0.1})
    pending = asyncio.ensure_future(
        journal.search_done(SERVICE, "t0", "t0", (1.0, 2.0), [found(0)], False)
    )
    await asyncio.sleep(0)  # queued, not yet written
    await journal.close()
    assert len(await pending) == 1
    assert rows(tmp_path, "SELECT count(*) FROM records") == [(1,)]


async def test_a_closed_journal_refuses_calls(tmp_path: Path):
    journal = Journal(tmp_path)
    await journal.open({"size": 0.1})
    await journal.close()
    with pytest.raises(JournalError, match="closed"):
        await journal.download_done(1, 100)
