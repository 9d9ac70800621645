"""The harvest journal: a SQLite file in the output directory, committed as work completes.

Tables:

- ``meta``: the harvest's options, so a resumed run can't silently change them
  (compared as values: :func:`._options.same_view`);
  what each service is and the folder its files go to (``services``); and the
  request rate each host's adaptive limiter ended at (``host_rates``), where a
  resumed run starts.
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
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

from .._exceptions import ParameterError, VOHarvestError
from . import _operations as ops
from ._batches import Batches, transaction
from ._operations import FoundRecord, PendingRecord
from ._options import same_view
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


#: KiB of page cache of the journal's writing connection (SQLite's default is 2,000).
_WRITE_CACHE_KIB = 512


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    # The harvest appends and updates recent rows: a small page cache holds the
    # B-trees' working paths (the file itself stays in the system's cache).
    connection.execute(f"PRAGMA cache_size = -{_WRITE_CACHE_KIB}")
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


#: KiB of page cache of a read-only connection (SQLite's default is 2,000).
_READ_CACHE_KIB = 256


def open_readonly(directory: Path) -> sqlite3.Connection:
    """A read-only connection to the journal in ``directory`` (for status and manifests)."""
    path = directory / JOURNAL_NAME
    if not path.exists():
        raise JournalError(f"no harvest journal in {directory}")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        # Reads stream through: a small page cache (which also bounds SQLite's
        # in-memory sorting for GROUP BY) keeps a status of millions of rows
        # as light as one of ten, at the same speed.
        connection.execute(f"PRAGMA cache_size = -{_READ_CACHE_KIB}")
        connection.execute("SELECT count(*) FROM searches").fetchone()
    except sqlite3.Error as exc:
        raise JournalError(f"can't read the journal {path}: {exc}") from exc
    return connection


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
                    ops.set_finished(db, False)
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
                ops.set_finished(self._db, False)
                wanted = json.dumps(options, sort_keys=True)
                kept = ops.meta(self._db, "options")
                if kept is None:
                    ops.set_meta(self._db, "options", wanted)
            if kept is not None and not same_view(json.loads(kept), json.loads(wanted)):
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

    # --- the operations (each documented in _operations) ---------------------
    # Alone in the thread: what a harvest reads or writes once, opening or closing.
    # In the next batch: the writes and reads of the running harvest.

    describe_services = _run_by(_in_thread)(ops.describe_services)
    service_folders = _run_by(_in_thread)(ops.service_folders)
    host_rates = _run_by(_in_thread)(ops.host_rates)
    set_host_rates = _run_by(_in_thread)(ops.set_host_rates)
    set_finished = _run_by(_in_batch)(ops.set_finished)
    done_pairs = _run_by(_in_batch)(ops.done_pairs)
    search_done = _run_by(_in_batch)(ops.search_done)
    search_failed = _run_by(_in_batch)(ops.search_failed)
    unfinished = _run_by(_in_batch)(ops.unfinished)
    resolved = _run_by(_in_batch)(ops.resolved)
    last_record_id = _run_by(_in_batch)(ops.last_record_id)
    download_done = _run_by(_in_batch)(ops.download_done)
    download_failed = _run_by(_in_batch)(ops.download_failed)
