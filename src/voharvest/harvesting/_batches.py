"""Grouped SQLite writes: the calls of one turn of the event loop in one transaction.

A :class:`Batches` queues calls (plain functions that run statements on one
connection) and hands them to a one-thread executor as a single transaction:
everything queued in the turn of the loop where the first call came, and then
whatever queued while the thread was writing. Each call runs in a savepoint of
its own, so a failing call is undone alone and its caller gets its error; the
others commit together. A call's result arrives once its transaction is
committed. One transaction for many calls means one commit (WAL frames
written once per page, not once per call) and one thread hand-off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["Batches", "transaction"]

T = TypeVar("T")
_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
_Job = tuple[Callable[..., Any], tuple[Any, ...]]


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``db`` (opened without isolation level): committed when
    the block ends, rolled back if it raises. A block may end the transaction itself
    (a ROLLBACK of its own): then nothing is left to commit."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if db.in_transaction:
        db.execute("COMMIT")


class Batches:
    """Calls grouped into transactions on ``connection()``, run in ``executor``'s one thread.

    ``error`` turns an ``sqlite3.Error`` into the exception callers see.
    """

    def __init__(
        self,
        executor: concurrent.futures.Executor,
        connection: Callable[[], sqlite3.Connection],
        error: Callable[[sqlite3.Error], Exception],
    ) -> None:
        self._executor = executor
        self._connection = connection
        self._error = error
        self._queued: list[_Call] = []
        self._writing: asyncio.Future[None] | None = None  # a batch is being written
        #: Transactions committed.
        self.commits = 0

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the next transaction; its result once that is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append((function, args, future))
        if self._writing is None:
            # Started at the end of this turn of the loop: the calls made in
            # this turn go in the same transaction.
            self._writing = loop.create_future()
            loop.call_soon(self._write)
        return await future

    async def drain(self) -> None:
        """Wait until every queued call is committed (or failed)."""
        while self._writing is not None:
            await asyncio.shield(self._writing)

    def _write(self) -> None:
        """Hand what is queued to the thread as one transaction; when none is left, say so."""
        writing = self._writing
        if not self._queued:
            self._writing = None
            if writing is not None and not writing.done():
                writing.set_result(None)
            return
        batch, self._queued = self._queued, []
        jobs = [(function, args) for function, args, _ in batch]
        try:
            done = asyncio.wrap_future(self._executor.submit(self._transaction, jobs))
        except RuntimeError as exc:  # the executor was shut down: the journal is closed
            done = asyncio.get_running_loop().create_future()
            done.set_exception(self._error(sqlite3.ProgrammingError(f"closed ({exc})")))
        done.add_done_callback(lambda outcome: self._deliver(batch, outcome))

    def _deliver(self, batch: list[_Call], outcome: asyncio.Future[list[Any]]) -> None:
        """Each call's result or error; then the next batch (what queued meanwhile)."""
        exc = outcome.exception()
        if exc is not None:  # the transaction itself failed: all its calls did
            if isinstance(exc, sqlite3.Error):
                exc = self._error(exc)
            outcomes: list[tuple[bool, Any]] = [(False, exc)] * len(batch)
        else:
            outcomes = outcome.result()
        for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._write()

    def _transaction(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        """(Thread.) Every job in one transaction, each in a savepoint: (ok, value or error)."""
        db = self._connection()
        outcomes: list[tuple[bool, Any]] = []
        with transaction(db):
            if len(jobs) == 1:  # alone: the transaction is its savepoint
                function, args = jobs[0]
                try:
                    outcomes.append((True, function(*args)))
                except Exception as exc:
                    db.execute("ROLLBACK")
                    outcomes.append((False, self._failure(exc)))
                    return outcomes
                jobs = []
            for function, args in jobs:
                db.execute("SAVEPOINT job")
                try:
                    value = function(*args)
                except Exception as exc:
                    db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                    outcomes.append((False, self._failure(exc)))
                else:
                    db.execute("RELEASE job")
                    outcomes.append((True, value))
        self.commits += 1
        return outcomes

    def _failure(self, exc: Exception) -> Exception:
        return self._error(exc) if isinstance(exc, sqlite3.Error) else exc
