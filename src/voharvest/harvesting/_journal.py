"""The harvest journal: a SQLite file in the output directory, committed as work completes.

Tables:

- ``meta``: the harvest's options, so a resumed run can't silently change them;
  and the request rate each host's adaptive limiter ended at (``host_rates``),
  where a resumed run starts.
- ``searches``: one row per (service, target) searched: done or failed.
- ``records``: one row per distinct access URL chosen for download, with its
  path under the output directory and its state (pending, done, failed).
  A record whose URL is a DataLink document (``kind`` = ``datalink``) is
  resolved by a download worker: the files it leads to (the dataset, or a
  cutout of it) become records of their own with ``parent`` pointing at it,
  ``via`` the document's URL, ``mode`` full or cutout and ``region`` the
  cutout's region, written in one transaction with the parent's change to
  ``resolved`` (or ``skipped``, when there was nothing to take).
- ``sightings``: every (record, service, target) pair, for the manifest.

A search and the records it found are written in one transaction, so after a
crash a search is either fully journaled or will be run again. A download is
marked done only after its file was renamed into place; a file found under
its final name at start-up is therefore complete (renames are atomic), and is
marked done without being fetched again.

SQLite calls block, so they run in the journal's own thread, never on the
event loop. Writes are grouped: every call made while the thread is busy (or
in the same turn of the event loop) joins one transaction, each call in a
savepoint of its own, so a failing call undoes only itself. A harvest thus
commits once per batch, not once per search and once per file, and the event
loop hands the thread one job per batch. A call returns once its batch is
committed. WAL mode keeps readers (``voharvest status``) out of the writer's way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from .._exceptions import ParameterError, VOHarvestError
from ._batches import Batches

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "JournalError",
    "PendingRecord",
    "mark_records",
    "open_readonly",
]

JOURNAL_NAME = "voharvest-journal.sqlite"
LOCK_NAME = "voharvest-journal.lock"
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS searches (
    service TEXT NOT NULL,
    target TEXT NOT NULL,
    target_label TEXT,
    ra REAL,
    dec REAL,
    state TEXT NOT NULL,
    records INTEGER NOT NULL DEFAULT 0,
    overflow INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (service, target)
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    service TEXT NOT NULL,
    target TEXT NOT NULL,
    target_label TEXT,
    title TEXT,
    format TEXT,
    announced_size INTEGER,
    ra REAL,
    dec REAL,
    state TEXT NOT NULL,
    bytes INTEGER,
    error TEXT,
    updated REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT 'file',
    parent INTEGER,
    via TEXT,
    mode TEXT,
    region TEXT,
    preview TEXT
);
CREATE INDEX IF NOT EXISTS records_state ON records (state, id);
CREATE TABLE IF NOT EXISTS sightings (
    url TEXT NOT NULL,
    service TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (url, service, target)
);
"""


# Columns added after the first release: journals written before get them on opening.
_ADDED_COLUMNS = (
    ("kind", "TEXT NOT NULL DEFAULT 'file'"),
    ("parent", "INTEGER"),
    ("via", "TEXT"),
    ("mode", "TEXT"),
    ("region", "TEXT"),
    ("preview", "TEXT"),
)


class JournalError(VOHarvestError):
    """The journal can't be opened or written (corrupt, in use by another harvest, disk full)."""


@dataclass(frozen=True)
class PendingRecord:
    """A record chosen for download and not yet done.

    ``kind`` is ``file`` or ``datalink`` (a document to resolve first);
    ``centre`` the searched position (a cutout's centre), where known.
    """

    id: int
    url: str
    path: str
    format: str | None
    announced_size: int | None
    service: str
    target: str
    target_label: str
    kind: str = "file"
    title: str | None = None
    centre: tuple[float, float] | None = None


@dataclass(frozen=True)
class FoundRecord:
    """A record a search chose (or a DataLink document led to), as the journal takes it."""

    url: str
    path: str
    title: str | None
    format: str | None
    announced_size: int | None
    ra: float | None
    dec: float | None
    kind: str = "file"
    via: str | None = None
    mode: str | None = None
    region: str | None = None
    preview: str | None = None


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def open_readonly(directory: Path) -> sqlite3.Connection:
    """A read-only connection to the journal in ``directory`` (for status and manifests)."""
    path = directory / JOURNAL_NAME
    if not path.exists():
        raise JournalError(f"no harvest journal in {directory}")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        connection.execute("SELECT count(*) FROM searches").fetchone()
    except sqlite3.Error as exc:
        raise JournalError(f"can't read the journal {path}: {exc}") from exc
    return connection


def _insert(
    db: sqlite3.Connection,
    record: FoundRecord,
    service: str,
    target: str,
    label: str,
    parent: int | None,
    centre: tuple[float, float] | None,
    now: float,
) -> PendingRecord | None:
    """Insert a record unless its URL is known; the new record as pending work, or None."""
    cursor = db.execute(
        "INSERT OR IGNORE INTO records (url, path, service, target, target_label, title,"
        " format, announced_size, ra, dec, state, updated, kind, parent, via, mode, region,"
        " preview) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
        (
            record.url,
            record.path,
            service,
            target,
            label,
            record.title,
            record.format,
            record.announced_size,
            record.ra,
            record.dec,
            now,
            record.kind,
            parent,
            record.via,
            record.mode,
            record.region,
            record.preview,
        ),
    )
    if not cursor.rowcount:
        return None
    return PendingRecord(
        int(cursor.lastrowid or 0), record.url, record.path, record.format,
        record.announced_size, service, target, label, record.kind, record.title, centre,
    )  # fmt: skip


def mark_records(
    directory: Path, *, done: Mapping[str, int] | None = None, pending: Iterable[str] = ()
) -> int:
    """Outside a running harvest, correct what the journal believes of files, by path.

    ``done``: paths (relative to ``directory``) found complete elsewhere, with
    their sizes; ``pending``: paths the journal calls done whose files are
    gone, to be fetched again. For a harvest whose files leave the directory
    (uploaded to object storage) and whose directory can be lost. Takes the
    journal's lock (JournalError if a harvest runs there). Returns the rows changed.
    """
    try:
        lock = (directory / LOCK_NAME).open("a")
    except OSError as exc:
        raise JournalError(f"can't use {directory}: {exc}") from exc
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise JournalError(f"a harvest is running in {directory}") from exc
        db = _connect(directory / JOURNAL_NAME)
        changed = 0
        now = time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            for path, size in (done or {}).items():
                changed += db.execute(
                    "UPDATE records SET state = 'done', bytes = ?, error = NULL, updated = ?"
                    " WHERE path = ? AND kind = 'file' AND state != 'done'",
                    (size, now, path),
                ).rowcount
            for path in pending:
                changed += db.execute(
                    "UPDATE records SET state = 'pending', bytes = NULL, updated = ?"
                    " WHERE path = ? AND kind = 'file' AND state = 'done'",
                    (now, path),
                ).rowcount
            if changed:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('finished', '0')")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise JournalError(f"journal in {directory}: {exc}") from exc
    finally:
        lock.close()
    return changed


class Journal:
    """The journal of one output directory; every method runs in the journal's thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / JOURNAL_NAME
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="voharvest-journal"
        )
        self._db: sqlite3.Connection | None = None
        self._lock: IO[str] | None = None
        self._batches = Batches(self._executor, lambda: self.db, self._error)

    @property
    def commits(self) -> int:
        """Transactions committed (a batch each), for tests and diagnosis."""
        return self._batches.commits

    def _error(self, exc: sqlite3.Error) -> JournalError:
        error = JournalError(f"journal {self.path}: {exc}")
        error.__cause__ = exc
        return error

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` alone in the thread (opening and closing)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from exc

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the next batch's transaction (see the module documentation)."""
        return await self._batches.run(function, *args)

    # --- lifetime -------------------------------------------------------------

    async def open(self, options: dict[str, Any]) -> None:
        """Open (or create) the journal; refuse one written with other options."""
        await self._call(self._open, options)

    def _open(self, options: dict[str, Any]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = (self.directory / LOCK_NAME).open("a")
        except OSError as exc:
            raise JournalError(f"can't use {self.directory}: {exc}") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise JournalError(
                f"another harvest is running in {self.directory} (its journal is locked)"
            ) from exc
        self._lock = lock
        try:
            self._db = _connect(self.path)
            self._db.executescript(_SCHEMA)
            present = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
            for name, declaration in _ADDED_COLUMNS:
                if name not in present:
                    self._db.execute(f"ALTER TABLE records ADD COLUMN {name} {declaration}")
            self._db.execute("CREATE INDEX IF NOT EXISTS records_parent ON records (parent)")
        except BaseException:
            self._close()
            raise
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('finished', '0')")
        wanted = json.dumps(options, sort_keys=True)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'options'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('options', ?)", (wanted,))
        elif row[0] != wanted:
            self._close()
            raise ParameterError(
                f"{self.directory} holds a harvest with other options ({row[0]}); "
                f"these are {wanted}. Use another output directory, or the same options."
            )

    async def close(self) -> None:
        try:
            if self._db is not None:
                await self._batches.drain()
            await self._call(self._close)
        finally:
            self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    async def describe_services(self, described: dict[str, dict[str, str]]) -> None:
        """Remember what each service is (label, title, waveband), for previews and reports.

        Kept in ``meta`` under ``services`` as JSON, service key to facts; a later
        run adds its services to those of the runs before.
        """

        def write() -> None:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'services'").fetchone()
            known = json.loads(row[0]) if row is not None else {}
            known.update(described)
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('services', ?)",
                (json.dumps(known, sort_keys=True),),
            )

        await self._call(write)

    async def set_finished(self, finished: bool) -> None:
        """Mark whether every target was read and every task run (by this run)."""
        value = "1" if finished else "0"
        await self._run(
            lambda: self.db.execute("INSERT OR REPLACE INTO meta VALUES ('finished', ?)", (value,))
        )

    async def host_rates(self) -> dict[str, float]:
        """The request rate each host ended at in the last run (origin -> requests/s)."""

        def read() -> dict[str, float]:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'host_rates'").fetchone()
            try:
                rates = json.loads(row[0]) if row else {}
            except ValueError:
                return {}
            if not isinstance(rates, dict):
                return {}
            return {
                str(k): float(v)
                for k, v in rates.items()
                if isinstance(v, int | float) and 0 < v < float("inf")
            }

        return await self._call(read)

    async def set_host_rates(self, rates: Mapping[str, float]) -> None:
        """Keep where each host's adaptive rate ended, for a resumed run to start there."""
        value = json.dumps({k: v for k, v in rates.items() if 0 < v < float("inf")})
        await self._call(
            lambda: self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('host_rates', ?)", (value,)
            )
        )

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("the journal is not open")
        return self._db

    # --- searches -------------------------------------------------------------

    async def done_pairs(self, targets: Sequence[str]) -> set[tuple[str, str]]:
        """The (service, target) pairs among ``targets`` whose search is done."""
        return await self._run(self._done_pairs, list(targets))

    def _done_pairs(self, targets: list[str]) -> set[tuple[str, str]]:
        done: set[tuple[str, str]] = set()
        for start in range(0, len(targets), 500):
            batch = targets[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self.db.execute(
                "SELECT service, target FROM searches"
                f" WHERE state = 'done' AND target IN ({marks})",
                batch,
            )
            done.update((service, target) for service, target in rows)
        return done

    async def search_done(
        self,
        service: str,
        target: str,
        label: str,
        position: tuple[float, float] | None,
        found: Iterable[FoundRecord],
        overflow: bool,
    ) -> list[PendingRecord]:
        """Journal a finished search and its records; return the records new to the harvest."""
        return await self._run(
            self._search_done, service, target, label, position, list(found), overflow
        )

    def _search_done(
        self,
        service: str,
        target: str,
        label: str,
        position: tuple[float, float] | None,
        found: list[FoundRecord],
        overflow: bool,
    ) -> list[PendingRecord]:
        now = time.time()
        ra, dec = position if position else (None, None)
        new: list[PendingRecord] = []
        db = self.db
        for record in found:
            pending = _insert(db, record, service, target, label, None, position, now)
            if pending is not None:
                new.append(pending)
            db.execute(
                "INSERT OR IGNORE INTO sightings VALUES (?, ?, ?)",
                (record.url, service, target),
            )
        db.execute(
            "INSERT OR REPLACE INTO searches VALUES (?, ?, ?, ?, ?, 'done', ?, ?, NULL, ?)",
            (service, target, label, ra, dec, len(found), int(overflow), now),
        )
        return new

    async def search_failed(
        self,
        service: str,
        target: str,
        label: str,
        position: tuple[float, float] | None,
        error: str,
    ) -> None:
        await self._run(self._search_failed, service, target, label, position, error)

    def _search_failed(
        self,
        service: str,
        target: str,
        label: str,
        position: tuple[float, float] | None,
        error: str,
    ) -> None:
        ra, dec = position if position else (None, None)
        self.db.execute(
            "INSERT OR REPLACE INTO searches VALUES (?, ?, ?, ?, ?, 'failed', 0, 0, ?, ?)",
            (service, target, label, ra, dec, error, time.time()),
        )

    # --- downloads ------------------------------------------------------------

    async def unfinished(self, after: int, below: int, limit: int) -> list[PendingRecord]:
        """Pending or failed records with ``after < id <= below``, in id order."""
        return await self._run(self._unfinished, after, below, limit)

    def _unfinished(self, after: int, below: int, limit: int) -> list[PendingRecord]:
        rows = self.db.execute(
            "SELECT r.id, r.url, r.path, r.format, r.announced_size, r.service, r.target,"
            " coalesce(r.target_label, r.target), r.kind, r.title, q.ra, q.dec FROM records r"
            " LEFT JOIN searches q ON q.service = r.service AND q.target = r.target"
            " WHERE r.state IN ('pending', 'failed') AND r.id > ? AND r.id <= ?"
            " ORDER BY r.id LIMIT ?",
            (after, below, limit),
        )
        found = []
        for row in rows:
            ra, dec = row[10], row[11]
            centre = (float(ra), float(dec)) if ra is not None and dec is not None else None
            ident, url, path, file_format, size, service, target, label = row[:8]
            found.append(
                PendingRecord(
                    ident,
                    url,
                    path,
                    file_format,
                    size,
                    service,
                    target,
                    label,
                    kind=row[8],
                    title=row[9],
                    centre=centre,
                )
            )
        return found

    async def resolved(
        self, parent: PendingRecord, children: Sequence[FoundRecord], note: str | None = None
    ) -> list[PendingRecord]:
        """Journal what a DataLink record led to; return the files new to the harvest.

        The children and the parent's new state (``resolved``, or ``skipped``
        with ``note`` when there are none) are written in one transaction.
        """
        return await self._run(self._resolved, parent, list(children), note)

    def _resolved(
        self, parent: PendingRecord, children: list[FoundRecord], note: str | None
    ) -> list[PendingRecord]:
        now = time.time()
        db = self.db
        new: list[PendingRecord] = []
        for child in children:
            pending = _insert(
                db, child, parent.service, parent.target, parent.target_label, parent.id,
                parent.centre, now,
            )  # fmt: skip
            if pending is not None:
                new.append(pending)
            else:
                # Found before by another route: the parent's searches saw it too.
                db.execute(
                    "INSERT OR IGNORE INTO sightings SELECT ?, service, target"
                    " FROM sightings WHERE url = ?",
                    (child.url, parent.url),
                )
        state = "resolved" if children else "skipped"
        db.execute(
            "UPDATE records SET state = ?, error = ?, updated = ? WHERE id = ?",
            (state, note, now, parent.id),
        )
        return new

    async def last_record_id(self) -> int:
        return await self._run(
            lambda: int(self.db.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0])
        )

    async def download_done(self, record_id: int, size: int) -> None:
        await self._run(
            lambda: self.db.execute(
                "UPDATE records SET state = 'done', bytes = ?, error = NULL, updated = ?"
                " WHERE id = ?",
                (size, time.time(), record_id),
            )
        )

    async def download_failed(self, record_id: int, error: str) -> None:
        await self._run(
            lambda: self.db.execute(
                "UPDATE records SET state = 'failed', error = ?, updated = ? WHERE id = ?",
                (error, time.time(), record_id),
            )
        )
