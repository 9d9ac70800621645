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

SQLite in WAL mode, one transaction per answer, so a kill loses at most the
answer being written. Its calls run in a thread of their own (the event loop
never waits on the disk).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import sqlite3
import zlib
from pathlib import Path
from typing import Any

from ._exceptions import StorageError

__all__ = ["DiscoveryJournal", "question_key"]

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
"""


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
