"""A partition whose staging folder was lost: the journal is made to agree with the store.

No cluster: the partition's reconcile step on its own, with a journal written
through the harvest's own Journal and a ``file://`` store.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from voharvest.dask._partition import _reconcile
from voharvest.dask._storage import Store, UploadLog
from voharvest.harvesting._journal import (
    JOURNAL_NAME,
    FoundRecord,
    Journal,
    JournalError,
    mark_records,
)


async def journal_with(folder: Path, done: list[int], count: int = 3) -> None:
    journal = Journal(folder)
    await journal.open({"size": 0.1})
    try:
        found = [
            FoundRecord(
                url=f"http://h.test/{i}.fits",
                path=f"svc/t/{i}.fits",
                title=None,
                format="image/fits",
                announced_size=None,
                ra=None,
                dec=None,
            )
            for i in range(count)
        ]
        new = await journal.search_done("sia1 http://h.test", "t", "t", (1.0, 2.0), found, False)
        for record in new:
            if int(record.url.rsplit("/", 1)[1].split(".")[0]) in done:
                await journal.download_done(record.id, 100)
    finally:
        await journal.close()


def states(folder: Path) -> dict[str, str]:
    with sqlite3.connect(folder / JOURNAL_NAME) as db:
        return dict(db.execute("SELECT path, state FROM records"))


def put(store: Store, relative: str, size: int = 100) -> None:
    target = Path(store.partition(0, relative))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"x" * size)


@pytest.mark.parametrize("restored", [True, False])
async def test_lost_files_are_fetched_again_and_stored_ones_are_not(tmp_path: Path, restored: bool):
    folder = tmp_path / "staging" / "0000"
    folder.mkdir(parents=True)
    store = Store(tmp_path / "store")
    # The journal copy says: 0 and 1 done, 2 pending. In truth 0 and 2 reached
    # the store (2 after the copy was made), 1 was lost with its machine.
    await journal_with(folder, done=[0, 1])
    put(store, "svc/t/0.fits")
    put(store, "svc/t/2.fits", size=123)

    uploaded, lost = _reconcile(store, 0, folder, UploadLog(folder), restored)

    assert (uploaded, lost) == (0, 1)
    expected = {"svc/t/0.fits": "done", "svc/t/1.fits": "pending"}
    # Only a journal restored from an older copy can be behind the store.
    expected["svc/t/2.fits"] = "done" if restored else "pending"
    assert states(folder) == expected
    if restored:
        with sqlite3.connect(folder / JOURNAL_NAME) as db:
            size = db.execute("SELECT bytes FROM records WHERE path = 'svc/t/2.fits'").fetchone()
        assert size == (123,)
    # Again: nothing more to change.
    assert _reconcile(store, 0, folder, UploadLog(folder), restored) == (0, 0)


async def test_a_finished_but_not_uploaded_file_is_uploaded(tmp_path: Path):
    folder = tmp_path / "staging" / "0000"
    folder.mkdir(parents=True)
    store = Store(tmp_path / "store")
    await journal_with(folder, done=[0], count=1)
    local = folder / "svc/t/0.fits"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"y" * 100)
    assert _reconcile(store, 0, folder, UploadLog(folder), False) == (1, 0)
    assert Path(store.partition(0, "svc/t/0.fits")).read_bytes() == b"y" * 100
    assert not local.exists() and states(folder) == {"svc/t/0.fits": "done"}


async def test_marking_records_refuses_a_running_harvest(tmp_path: Path):
    await journal_with(tmp_path, done=[0], count=1)
    journal = Journal(tmp_path)
    await journal.open({"size": 0.1})
    try:
        with pytest.raises(JournalError, match="running"):
            mark_records(tmp_path, pending=["svc/t/0.fits"])
    finally:
        await journal.close()
    assert mark_records(tmp_path, pending=["svc/t/0.fits"]) == 1
    assert states(tmp_path) == {"svc/t/0.fits": "pending"}


def test_a_cutout_type_sia1_service_stays_one_on_the_workers():
    """The Cutout-type flag of an SIA 1.0 service survives the trip to a worker."""
    import pickle

    from voharvest.dask._driver import _service_spec
    from voharvest.dask._partition import _services
    from voharvest.services import SIA2Service, SIAService

    class Client:  # what _services asks of a VOClient
        def sia_service(self, url: str, *, version: int = 1, cuts: bool = False) -> object:
            return SIAService(self, url, cuts=cuts) if version == 1 else SIA2Service(self, url)

    given = [SIAService(None, "http://a.test/sia", cuts=True), "http://b.test/sia",  # type: ignore[arg-type]
             SIA2Service(None, "http://c.test/sia2")]  # type: ignore[arg-type]  # fmt: skip
    specs = pickle.loads(pickle.dumps(tuple(_service_spec(s) for s in given)))
    rebuilt = _services(Client(), specs)  # type: ignore[arg-type]
    assert [type(s).__name__ for s in rebuilt] == ["SIAService", "SIAService", "SIA2Service"]
    assert [getattr(s, "cuts", None) for s in rebuilt] == [True, False, None]


def test_a_journal_file_without_tables_is_no_journal(tmp_path: Path):
    """A run killed right after creating its journal file leaves it empty: nothing to mend."""
    folder = tmp_path / "staging" / "0000"
    folder.mkdir(parents=True)
    (folder / JOURNAL_NAME).write_bytes(b"")
    store = Store(tmp_path / "store")
    assert _reconcile(store, 0, folder, UploadLog(folder), True) == (0, 0)
