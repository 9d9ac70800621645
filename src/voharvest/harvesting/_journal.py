"""The harvest journal: a SQLite file in the output directory, committed as work completes.

Tables:

- ``meta``: the harvest's options, so a resumed run can't silently change them;
  and the request rate each host's adaptive limiter ended at (``host_rates``),
  where a resumed run starts.
- ``searches``: one row per (service, target) searched: done or failed.
- ``records``: one row per record chosen for download, with its path under the
  output directory and its state (pending, done, failed). A record is its
  access URL, and for a DataLink record whose cutout depends on the target,
  that target too (``cut_for``; empty for every other record).
  A record whose URL is a DataLink document (``kind`` = ``datalink``) is
  resolved by a download worker: the files it leads to (the dataset, or a
  cutout of it) become records of their own with ``parent`` pointing at it,
  ``via`` the document's URL, ``mode`` full or cutout and ``region`` the
  cutout's region, written in one transaction with the parent's change to
  ``resolved`` (or ``skipped``, when there was nothing to take).
- ``sightings``: every (record URL, service, target) triple, for the manifest.

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

Journals written by earlier versions are brought up to date on opening by the
ordered steps of :mod:`._schema`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import functools
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

from .._exceptions import ParameterError, VOHarvestError
from ._batches import Batches, transaction
from ._schema import migrate

__all__ = [
    "JOURNAL_NAME",
    "FoundRecord",
    "Journal",
    "JournalError",
    "PendingRecord",
    "mark_records",
    "open_readonly",
]

JOURNAL_NAME = "voharvest-journal.sqlite"
LOCK_NAME = "voharvest-journal.lock"
T = TypeVar("T")
P = ParamSpec("P")


class JournalError(VOHarvestError):
    """The journal can't be opened or written (corrupt, in use by another harvest, disk full)."""


@dataclass(frozen=True)
class PendingRecord:
    """A record chosen for download and not yet done.

    ``kind`` is ``file`` or ``datalink`` (a document to resolve first);
    ``centre`` the searched position (a cutout's centre), where known;
    ``cut_for`` the target a DataLink record's cutout is cut for ('' if none).
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
    cut_for: str = ""


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
    cut_for: str = ""


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _lock(directory: Path, busy: str) -> IO[str]:
    """The journal's lock file, held (JournalError saying ``busy`` if another process has it)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = (directory / LOCK_NAME).open("a")
    except OSError as exc:
        raise JournalError(f"can't use {directory}: {exc}") from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock.close()
        raise JournalError(busy) from exc
    return lock


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


def _put(db: sqlite3.Connection, verb: str, table: str, row: Mapping[str, Any]) -> int:
    """``verb`` (INSERT OR IGNORE, INSERT OR REPLACE) ``row`` into ``table``; rows changed."""
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    sql = f"{verb} INTO {table} ({columns}) VALUES ({marks})"
    return db.execute(sql, tuple(row.values())).rowcount


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    _put(db, "INSERT OR REPLACE", "meta", {"key": key, "value": value})


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _insert(
    db: sqlite3.Connection,
    record: FoundRecord,
    parent: PendingRecord | None,
    found_by: tuple[str, str, str],
    centre: tuple[float, float] | None,
    now: float,
) -> PendingRecord | None:
    """Insert a record unless it is known; the new record as pending work, or None."""
    service, target, label = found_by
    fields = {
        "url": record.url, "cut_for": record.cut_for, "path": record.path,
        "service": service, "target": target, "target_label": label, "title": record.title,
        "format": record.format, "announced_size": record.announced_size, "ra": record.ra,
        "dec": record.dec, "state": "pending", "updated": now, "kind": record.kind,
        "parent": parent.id if parent else None, "via": record.via, "mode": record.mode,
        "region": record.region, "preview": record.preview,
    }  # fmt: skip
    cursor = db.execute(
        f"INSERT OR IGNORE INTO records ({', '.join(fields)})"
        f" VALUES ({', '.join('?' * len(fields))})",
        tuple(fields.values()),
    )
    if not cursor.rowcount:
        return None
    return PendingRecord(
        int(cursor.lastrowid or 0), record.url, record.path, record.format,
        record.announced_size, service, target, label, record.kind, record.title, centre,
        record.cut_for,
    )  # fmt: skip


def _set_state(db: sqlite3.Connection, record_id: int, **values: Any) -> None:
    """Change a record's columns (``state``, ``bytes``, ``error``), stamped with the time."""
    values["updated"] = time.time()
    assignments = ", ".join(f"{name} = ?" for name in values)
    db.execute(f"UPDATE records SET {assignments} WHERE id = ?", (*values.values(), record_id))


# --- the operations, each run in the journal's thread (see Journal) -----------------------


def _done_pairs(db: sqlite3.Connection, targets: Sequence[str]) -> set[tuple[str, str]]:
    """The (service, target) pairs among ``targets`` whose search is done."""
    done: set[tuple[str, str]] = set()
    targets = list(targets)
    for start in range(0, len(targets), 500):
        batch = targets[start : start + 500]
        marks = ",".join("?" * len(batch))
        rows = db.execute(
            f"SELECT service, target FROM searches WHERE state = 'done' AND target IN ({marks})",
            batch,
        )
        done.update((service, target) for service, target in rows)
    return done


def _search_row(
    db: sqlite3.Connection,
    service: str,
    target: str,
    label: str,
    position: tuple[float, float] | None,
    **outcome: Any,
) -> None:
    ra, dec = position if position else (None, None)
    row = {"service": service, "target": target, "target_label": label, "ra": ra, "dec": dec}
    _put(db, "INSERT OR REPLACE", "searches", {**row, **outcome, "updated": time.time()})


def _search_done(
    db: sqlite3.Connection,
    service: str,
    target: str,
    label: str,
    position: tuple[float, float] | None,
    found: Iterable[FoundRecord],
    overflow: bool,
) -> list[PendingRecord]:
    """Journal a finished search and its records; return the records new to the harvest."""
    now = time.time()
    found = list(found)
    new: list[PendingRecord] = []
    for record in found:
        pending = _insert(db, record, None, (service, target, label), position, now)
        if pending is not None:
            new.append(pending)
        sighting = {"url": record.url, "service": service, "target": target}
        _put(db, "INSERT OR IGNORE", "sightings", sighting)
    _search_row(
        db, service, target, label, position,
        state="done", records=len(found), overflow=int(overflow), error=None,
    )  # fmt: skip
    return new


def _search_failed(
    db: sqlite3.Connection,
    service: str,
    target: str,
    label: str,
    position: tuple[float, float] | None,
    error: str,
) -> None:
    """Journal a failed search (run again by the next run)."""
    _search_row(
        db, service, target, label, position, state="failed", records=0, overflow=0, error=error
    )


def _unfinished(db: sqlite3.Connection, after: int, below: int, limit: int) -> list[PendingRecord]:
    """Pending or failed records with ``after < id <= below``, in id order."""
    rows = db.execute(
        "SELECT r.id, r.url, r.path, r.format, r.announced_size, r.service, r.target,"
        " coalesce(r.target_label, r.target), r.kind, r.title, q.ra, q.dec, r.cut_for"
        " FROM records r LEFT JOIN searches q ON q.service = r.service AND q.target = r.target"
        " WHERE r.state IN ('pending', 'failed') AND r.id > ? AND r.id <= ?"
        " ORDER BY r.id LIMIT ?",
        (after, below, limit),
    )
    found = []
    for row in rows:
        ra, dec = row[10], row[11]
        centre = (float(ra), float(dec)) if ra is not None and dec is not None else None
        ident, url, path, file_format, size, service, target, label, kind, title = row[:10]
        found.append(PendingRecord(ident, url, path, file_format, size, service, target, label,
                                   kind, title, centre, row[12]))  # fmt: skip
    return found


def _resolved(
    db: sqlite3.Connection,
    parent: PendingRecord,
    children: Sequence[FoundRecord],
    note: str | None = None,
) -> list[PendingRecord]:
    """Journal what a DataLink record led to; return the files new to the harvest.

    The children and the parent's new state (``resolved``, or ``skipped``
    with ``note`` when there are none) are written in one transaction.
    """
    now = time.time()
    new: list[PendingRecord] = []
    found_by = (parent.service, parent.target, parent.target_label)
    for child in children:
        pending = _insert(db, child, parent, found_by, parent.centre, now)
        if pending is not None:
            new.append(pending)
        else:
            # Found before by another route: the parent's searches saw it too
            # (those of its target, if it was cut for one).
            db.execute(
                "INSERT OR IGNORE INTO sightings (url, service, target)"
                " SELECT ?, service, target FROM sightings"
                " WHERE url = ? AND ? IN ('', target)",
                (child.url, parent.url, parent.cut_for),
            )
    state = "resolved" if children else "skipped"
    _set_state(db, parent.id, state=state, error=note)
    return new


def _last_record_id(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0])


def _download_done(db: sqlite3.Connection, record_id: int, size: int) -> None:
    _set_state(db, record_id, state="done", bytes=size, error=None)


def _download_failed(db: sqlite3.Connection, record_id: int, error: str) -> None:
    _set_state(db, record_id, state="failed", error=error)


def _set_finished(db: sqlite3.Connection, finished: bool) -> None:
    """Mark whether every target was read and every task run (by this run)."""
    _set_meta(db, "finished", "1" if finished else "0")


def _describe_services(db: sqlite3.Connection, described: Mapping[str, Mapping[str, str]]) -> None:
    """Remember what each service is (label, title, waveband), for previews and reports.

    Kept in ``meta`` under ``services`` as JSON, service key to facts; a later
    run adds its services to those of the runs before.
    """
    known = json.loads(_meta(db, "services") or "{}")
    known.update(described)
    _set_meta(db, "services", json.dumps(known, sort_keys=True))


def _service_folders(db: sqlite3.Connection) -> dict[str, str]:
    """The folder each service's files went to in earlier runs (service key -> folder)."""
    rows = db.execute(
        "SELECT service, min(path) FROM records WHERE parent IS NULL GROUP BY service"
    )
    return {service: path.split("/", 1)[0] for service, path in rows if "/" in path}


def _host_rates(db: sqlite3.Connection) -> dict[str, float]:
    """The request rate each host ended at in the last run (origin -> requests/s)."""
    try:
        rates = json.loads(_meta(db, "host_rates") or "{}")
    except ValueError:
        return {}
    if not isinstance(rates, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in rates.items()
        if isinstance(v, int | float) and 0 < v < float("inf")
    }


def _set_host_rates(db: sqlite3.Connection, rates: Mapping[str, float]) -> None:
    """Keep where each host's adaptive rate ended, for a resumed run to start there."""
    _set_meta(
        db, "host_rates", json.dumps({k: v for k, v in rates.items() if 0 < v < float("inf")})
    )


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
    lock = _lock(directory, f"a harvest is running in {directory}")
    try:
        db = _connect(directory / JOURNAL_NAME)
        changed = 0
        now = time.time()
        try:
            with transaction(db):
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
                    _set_finished(db, False)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise JournalError(f"journal in {directory}: {exc}") from exc
    finally:
        lock.close()
    return changed


# --- the async bridge ---------------------------------------------------------------------


def _run_by(
    runner: Callable[[Journal, Callable[[], T]], Awaitable[T]],
) -> Callable[
    [Callable[Concatenate[sqlite3.Connection, P], T]],
    Callable[Concatenate[Journal, P], Coroutine[Any, Any, T]],
]:
    """Make ``operation(db, ...)`` a Journal method that ``runner`` runs in the thread."""

    def method_of(
        operation: Callable[Concatenate[sqlite3.Connection, P], T],
    ) -> Callable[Concatenate[Journal, P], Coroutine[Any, Any, T]]:
        @functools.wraps(operation)
        async def method(self: Journal, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return await runner(self, lambda: operation(self.db, *args, **kwargs))

        return method

    return method_of


class Journal:
    """The journal of one output directory; every operation runs in the journal's thread."""

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

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("the journal is not open")
        return self._db

    def _error(self, exc: sqlite3.Error) -> JournalError:
        error = JournalError(f"journal {self.path}: {exc}")
        error.__cause__ = exc
        return error

    async def _in_thread(self, function: Callable[[], T]) -> T:
        """``function()`` alone in the journal's thread (opening, closing, reading meta)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    # --- lifetime -------------------------------------------------------------

    async def open(self, options: dict[str, Any]) -> None:
        """Open (or create) the journal; refuse one written with other options."""
        await self._in_thread(lambda: self._open(options))

    def _open(self, options: dict[str, Any]) -> None:
        busy = f"another harvest is running in {self.directory} (its journal is locked)"
        self._lock = _lock(self.directory, busy)
        try:
            self._db = _connect(self.path)
            migrate(self._db)
            with transaction(self._db):
                _set_finished(self._db, False)
                wanted = json.dumps(options, sort_keys=True)
                kept = _meta(self._db, "options")
                if kept is None:
                    _set_meta(self._db, "options", wanted)
            if kept is not None and kept != wanted:
                raise ParameterError(
                    f"{self.directory} holds a harvest with other options ({kept}); "
                    f"these are {wanted}. Use another output directory, or the same options."
                )
        except BaseException:
            self._close()
            raise

    async def close(self) -> None:
        try:
            if self._db is not None:
                await self._batches.drain()
            await self._in_thread(self._close)
        finally:
            self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    async def _in_batch(self, function: Callable[[], T]) -> T:
        """``function()`` in the next batch's transaction (see the module documentation)."""
        return await self._batches.run(function)

    # --- the operations (documented where they are written, above) ------------
    # Alone in the thread: what a harvest reads or writes once, opening or closing.
    # In the next batch: the writes and reads of the running harvest.

    describe_services = _run_by(_in_thread)(_describe_services)
    service_folders = _run_by(_in_thread)(_service_folders)
    host_rates = _run_by(_in_thread)(_host_rates)
    set_host_rates = _run_by(_in_thread)(_set_host_rates)
    set_finished = _run_by(_in_batch)(_set_finished)
    done_pairs = _run_by(_in_batch)(_done_pairs)
    search_done = _run_by(_in_batch)(_search_done)
    search_failed = _run_by(_in_batch)(_search_failed)
    unfinished = _run_by(_in_batch)(_unfinished)
    resolved = _run_by(_in_batch)(_resolved)
    last_record_id = _run_by(_in_batch)(_last_record_id)
    download_done = _run_by(_in_batch)(_download_done)
    download_failed = _run_by(_in_batch)(_download_failed)
