"""A download's ``.part`` file: writes from the client's file threads, one in flight.

:class:`PartFile` is the file side of :class:`voharvest._downloader.Downloader`:
each write is the pieces the socket gave (``os.writev``, no copy), in the
client's file threads while the next pieces are read; with fsync on, each
write also starts the kernel's writeback of the file (Linux
``sync_file_range`` with ``SYNC_FILE_RANGE_WRITE``, which does not wait), so
the fsync before the rename finds little left; the last write, fsync, close,
content check and rename run in one hop. The file is opened by the first job
that writes to it, in its thread: a file that arrives in one piece takes one
hop from open to rename.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ABSENT", "PartFile", "write_all"]

logger = logging.getLogger("voharvest.client")

#: Errors of ``stat`` that mean "no file there".
ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)

#: Buffers per ``writev`` call (Linux allows 1024).
_IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 16


def write_all(fd: int, pieces: Sequence[bytes | memoryview]) -> None:
    """Write ``pieces`` in order to ``fd``, however short each ``writev`` falls."""
    queue: list[bytes | memoryview] = [piece for piece in pieces if len(piece)]
    start = 0
    while start < len(queue):
        written = os.writev(fd, queue[start : start + _IOV_MAX])
        if written <= 0:
            raise OSError(errno.EIO, "the disk took none of the bytes written")
        while written:
            head = queue[start]
            if written >= len(head):
                written -= len(head)
                start += 1
            else:
                queue[start] = memoryview(head)[written:]
                written = 0


def _writeback_starter() -> Callable[[int], object] | None:
    """``fd`` -> start writing the file's dirty pages to the disk, without waiting.

    Linux's ``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`` (pages already
    on their way are left alone), through ctypes; None where the C library
    has no such call. Its outcome is not checked: it is advice, and the fsync
    before the rename reports what went wrong.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    sync_file_range_write = 2  # SYNC_FILE_RANGE_WRITE, <linux/fs.h>

    def start(fd: int) -> object:
        return call(fd, 0, 0, sync_file_range_write)

    return start


_start_writeback = _writeback_starter()


class _Opening:
    """(Thread side.) The ``.part``, opened by the first job that needs its descriptor.

    Jobs on one part run one after another (each waits for the one before),
    so only one thread touches this at a time.
    """

    __slots__ = ("append", "fd", "note", "path")

    def __init__(self, path: Path, append: bool, note: tuple[Path, str] | None) -> None:
        self.path = path
        self.append = append
        self.note = note  # (path, text) written just before the part is first opened
        self.fd: int | None = None

    def fileno(self) -> int:
        if self.fd is None:
            if self.note is not None:
                where, text = self.note
                where.write_text(text, encoding="utf-8")
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self.append else os.O_TRUNC)
            self.fd = os.open(self.path, flags, 0o666)
        return self.fd

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def _write_out(file: _Opening, pieces: Sequence[bytes | memoryview], early: bool) -> None:
    """Write ``pieces``; with ``early``, start their writeback to the disk (see the module doc)."""
    fd = file.fileno()
    write_all(fd, pieces)
    if early and _start_writeback is not None:
        _start_writeback(fd)


def _write_after(
    pending: concurrent.futures.Future[None] | None, file: _Opening, pieces: list[bytes]
) -> None:
    """Write ``pieces`` once the write before them ended (written, or failed: then not)."""
    if pending is not None:
        pending.result()
    write_all(file.fileno(), pieces)


def _finish(
    pending: concurrent.futures.Future[None] | None,
    file: _Opening,
    pieces: list[bytes],
    sync: bool,
    then: Callable[[], None] | None,
) -> None:
    """The write in flight, then ``pieces``, fsync (if ``sync``) and close; then ``then()``
    (the content check and the rename), only if all of that went well."""
    try:
        if pending is not None:
            pending.result()
        elif file.fd is None and then is not None:
            # The whole file, written, synced and renamed in this one job: a resume
            # note would be removed at once (a .part a crash left without one is
            # fetched again from its start).
            file.note = None
        fd = file.fileno()
        write_all(fd, pieces)
        if sync:
            os.fsync(fd)
    finally:
        file.close()
    if then is not None:
        then()


def _close_after(pending: concurrent.futures.Future[None] | None, file: _Opening) -> None:
    """Close the file once the write in flight on it ended (in a file thread, never on the loop)."""
    try:
        if pending is not None:
            concurrent.futures.wait([pending])
    finally:
        file.close()


class PartFile:
    """A ``.part`` open for appending, with at most one write in flight in ``executor``.

    :meth:`write` waits for the previous write, then hands this one to a thread
    and returns: the caller reads on while the disk works. :meth:`finish`
    ends it in one hop (the last pieces, fsync, close, and what comes next);
    :meth:`abandon` closes once the write in flight ended, whatever happens to
    the caller. With ``early_writeback`` each write also starts the disk
    writing it out (see the module doc).
    """

    def __init__(
        self, file: _Opening, executor: concurrent.futures.Executor, early_writeback: bool = False
    ) -> None:
        self._file: _Opening | None = file
        self._executor = executor
        self._early = early_writeback
        self._pending: concurrent.futures.Future[None] | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        append: bool,
        executor: concurrent.futures.Executor,
        early_writeback: bool = False,
        note: tuple[Path, str] | None = None,
    ) -> PartFile:
        """The ``.part`` at ``path``, opened (and ``note`` written) by its first write.

        Nothing touches the disk here: a file whose bytes all arrive before
        the first write is opened, written, synced and renamed in one hop.
        """
        return cls(_Opening(path, append, note), executor, early_writeback)

    async def write(self, pieces: list[bytes]) -> None:
        if self._file is None:
            raise ValueError("write to a closed part file")
        if self._pending is not None:
            # Shielded: a cancelled caller leaves the write running (and known to
            # abandon(), which closes the file only after it).
            await asyncio.shield(asyncio.wrap_future(self._pending))
        self._pending = self._executor.submit(_write_out, self._file, pieces, self._early)

    def keep(self, pieces: list[bytes]) -> None:
        """Queue a last write behind the one in flight, without waiting (after a failure:
        what was received stays on disk for a resume)."""
        if self._file is not None and pieces:
            self._pending = self._executor.submit(_write_after, self._pending, self._file, pieces)

    async def finish(
        self, pieces: list[bytes], sync: bool, then: Callable[[], None] | None = None
    ) -> None:
        """In one hop: the last ``pieces`` written behind the write in flight, fsync if
        ``sync``, close, then ``then()`` if all went well (errors of any of them raised).

        If the caller is cancelled meanwhile, ``then`` is skipped unless it had begun.
        """
        file, self._file = self._file, None
        if file is None:
            return
        pending, self._pending = self._pending, None
        wanted = True

        def next_step() -> None:
            if wanted and then is not None:
                then()

        closing = self._executor.submit(_finish, pending, file, pieces, sync, next_step)
        try:
            await asyncio.shield(asyncio.wrap_future(closing))
        except asyncio.CancelledError:
            wanted = False
            raise

    async def abandon(self) -> None:
        """Close without raising: after a failure, once the write in flight ended."""
        file, self._file = self._file, None
        if file is None:
            return
        pending, self._pending = self._pending, None
        if pending is None and file.fd is None:
            return  # never written: nothing was opened
        closing = self._executor.submit(_close_after, pending, file)
        try:
            await asyncio.shield(asyncio.wrap_future(closing))
        except OSError as exc:
            logger.warning("closing a part file failed: %s", exc)
