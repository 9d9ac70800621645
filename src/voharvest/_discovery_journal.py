"""The journal of a discovery: every answer it got, so that a second run asks nothing twice.

A discovery given a journal file keeps there, as each arrives, the body of
every answer that succeeded — the registry's and each search's — under a key
that names the question: the registry query's text, or the service, the
kind of request and the targets of a search. Run again (after a crash, a
kill, a Ctrl-C), the discovery makes the same plan from the same registry
answers, finds each question already answered and reads the answer from the
journal instead of asking; only what had not been answered (or had failed) is
sent. A service found to refuse batches is noted too, so that it is not asked
again to take one.

It also keeps the provenance of the last run, a row per service
(``services``: queried / skipped / elided / failed, records, requests), and
the downloads of what was found (``files``: done or failed, path, size), so
that a download run again fetches only what is not done.

SQLite in WAL mode, one transaction per answer, so a kill loses at most the
answer being written. Its calls run in a thread of their own (the event loop
never waits on the disk).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import sqlite3
import zlib
from pathlib import Path
from typing import Any

from ._exceptions import ParameterError, StorageError

__all__ = ["DiscoveryJournal", "FileState", "question_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS services (
    ivoid TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    report TEXT NOT NULL,
    PRIMARY KEY (ivoid, kind)
);
CREATE TABLE IF NOT EXISTS files (
    url TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    path TEXT,
    bytes INTEGER,
    error TEXT
);
"""

#: A download as the journal keeps it: (state ``done`` or ``failed``, path, size, error).
FileState = tuple[str, str | None, int | None, str | None]


def question_key(*parts: Any) -> str:
    """A short, stable key for a question (its parts joined, hashed)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class DiscoveryJournal:
    """Answers by question, in a SQLite file (created if needed)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._thread = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="voharvest-discovery-journal"
        )
        self._db: sqlite3.Connection | None = None
        #: How many answers were read from the journal instead of asked for.
        self.replayed = 0
        #: How many downloads were found done in the journal (and not fetched again).
        self.files_kept = 0

    async def _run(self, work: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, work, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"the discovery journal {self.path} failed: {exc}") from exc

    async def open(self) -> DiscoveryJournal:
        await self._run(self._open)
        return self

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._close)
        self._thread.shutdown(wait=False)

    def _close(self) -> None:
        assert self._db is not None
        self._db.close()
        self._db = None

    async def answer(self, key: str) -> tuple[str, bytes] | None:
        """The (url, body) kept for a question, or None."""
        found = await self._run(self._answer, key)
        if found is not None:
            self.replayed += 1
        return found  # type: ignore[no-any-return]

    def _answer(self, key: str) -> tuple[str, bytes] | None:
        assert self._db is not None
        row = self._db.execute("SELECT url, body FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return str(row[0]), zlib.decompress(row[1])

    async def keep(self, key: str, url: str, body: bytes) -> None:
        await self._run(self._keep, key, url, zlib.compress(body, 6))

    def _keep(self, key: str, url: str, packed: bytes) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT OR REPLACE INTO answers (key, url, body) VALUES (?, ?, ?)", (key, url, packed)
        )

    async def note(self, key: str) -> str | None:
        return await self._run(self._note, key)  # type: ignore[no-any-return]

    def _note(self, key: str) -> str | None:
        assert self._db is not None
        row = self._db.execute("SELECT value FROM notes WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    async def set_note(self, key: str, value: str) -> None:
        await self._run(self._set_note, key, value)

    def _set_note(self, key: str, value: str) -> None:
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO notes (key, value) VALUES (?, ?)", (key, value))

    # --- provenance and downloads ------------------------------------------------------

    async def set_services(self, reports: list[dict[str, Any]]) -> None:
        """The provenance of this run, a row per service (replacing the last run's),
        in one transaction. Each report is plain data (``ServiceReport`` as a dict)."""
        rows = [
            (r["ivoid"], r["kind"], r["status"], json.dumps(r, sort_keys=True)) for r in reports
        ]
        await self._run(self._set_services, rows)

    def _set_services(self, rows: list[tuple[str, str, str, str]]) -> None:
        assert self._db is not None
        self._db.execute("BEGIN")
        try:
            self._db.execute("DELETE FROM services")
            self._db.executemany("INSERT INTO services VALUES (?, ?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def services(self) -> list[dict[str, Any]]:
        """The provenance kept by :meth:`set_services`, ordered by service."""
        return await self._run(self._services)  # type: ignore[no-any-return]

    def _services(self) -> list[dict[str, Any]]:
        assert self._db is not None
        rows = self._db.execute("SELECT report FROM services ORDER BY ivoid, kind")
        return [json.loads(row[0]) for row in rows]

    async def file(self, url: str) -> FileState | None:
        """The download of ``url`` as kept, or None if it was never tried."""
        return await self._run(self._file, url)  # type: ignore[no-any-return]

    def _file(self, url: str) -> FileState | None:
        assert self._db is not None
        row = self._db.execute(
            "SELECT state, path, bytes, error FROM files WHERE url = ?", (url,)
        ).fetchone()
        return None if row is None else (str(row[0]), row[1], row[2], row[3])

    async def set_file(
        self,
        url: str,
        state: str,
        *,
        path: str | None = None,
        size: int | None = None,
        error: str | None = None,
    ) -> None:
        """Keep a download's outcome: ``done`` (with its path and size) or ``failed``."""
        if state not in ("done", "failed"):
            raise ParameterError(f"a download is done or failed, not {state!r}")
        await self._run(self._set_file, (url, state, path, size, error))

    def _set_file(self, row: tuple[str, str, str | None, int | None, str | None]) -> None:
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", row)
