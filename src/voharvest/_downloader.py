"""The download of one URL into one file: the state machine behind ``VOClient.download``.

A :class:`Downloader` passes a file through small steps, each a method::

    place  -> resume point -> request (Range, If-Range) -> answer checked
           -> stream to .part -> length checked, fsync -> verify -> rename

- **place**: the final name, ``<name>.part`` and ``<name>.part.json`` (the
  note a kept part carries: URL and validator); a complete file already under
  the final name is kept.
- **resume point**: the bytes a kept ``.part`` holds, and the validator
  (strong ETag, else Last-Modified) it was fetched under.
- **request**: a GET with ``Range: bytes=N-`` and ``If-Range`` when resuming;
  the answer decides: 206 from the right byte appends, 200 starts over (never
  an append: the server ignored Range or the file changed), 416 means the
  part may be whole, a DataLink document where a file was due is handed back.
- **stream to .part**: each write is the pieces the socket gave since the
  last one (no gathering buffer, no copy: ``os.writev`` of the received
  ``bytes``), in the client's file threads, while the next pieces are read:
  one write in flight per download, at least ``chunk_bytes`` each. After a
  cut, a stall or a cancellation, what was received is written too, so a
  resume asks only for the rest.
- **verify** and **rename**: the length against the announced one, the head
  against the expected format, fsync, then the atomic rename.
- **writeback starts early**: with fsync on, each write also asks the kernel
  to start writing the file's dirty pages out (Linux ``sync_file_range``
  with ``SYNC_FILE_RANGE_WRITE``, which does not wait), so the disk works
  while the body streams in and the fsync before the rename finds little
  left to do. Without that call (another system) the fsync does it all.

The blocking steps run in the client's file threads, several file-system
calls per hop, so that the event loop does a few callbacks per file: the
place and the resume point in one hop, the note and the opening of the
``.part`` in one, each write in one, and the last write, fsync, close,
content check and rename in one. A file that comes in one write thus takes
three hops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._downloads import (
    HEAD_BYTES,
    LinksInstead,
    content_range,
    content_range_total,
    head_problem,
    read_capped,
    resumable,
)
from ._exceptions import FormatError, PayloadError, StorageError, TooLargeError
from ._files import inside, safe_filename
from ._partfile import ABSENT, PartFile, write_all
from .naming import url_filename
from .protocol.datalink import is_datalink_format

if TYPE_CHECKING:
    from ._config import ClientConfig
    from ._retries import Budget
    from .transport import Stream, Transport

__all__ = ["Downloader", "Fetched", "PartFile", "fetched", "write_all"]

logger = logging.getLogger("voharvest.client")

T = TypeVar("T")


@dataclass
class Fetched:
    """What the latest :meth:`Downloader.fetch` in a context did: its file, its size, and
    whether it was there already (nothing fetched).

    A caller that counts files (the harvest) sets :data:`fetched` to one of
    these before ``VOClient.download`` and reads it after, instead of looking
    at the file again in a thread of its own.
    """

    path: Path | None = None
    size: int = 0
    existed: bool = False


#: Where :meth:`Downloader.fetch` reports what it did (None: nobody asked).
fetched: ContextVar[Fetched | None] = ContextVar("voharvest_fetched", default=None)


@dataclass(frozen=True)
class _Place:
    """Where one download lands: the final name, its ``.part`` and the part's note."""

    final: Path
    part: Path
    note: Path

    @classmethod
    def of(cls, folder: Path, name: str) -> _Place:
        final = inside(folder, name)
        return cls(
            final, final.with_name(final.name + ".part"), final.with_name(final.name + ".part.json")
        )


def _note(stream: Stream, url: str, total: int | None) -> str:
    """What a kept part was fetched under, for the next run to resume it (JSON)."""
    return json.dumps(
        {
            "url": url,
            "etag": stream.headers.get("ETag"),
            "last_modified": stream.headers.get("Last-Modified"),
            "length": total,
        }
    )


def _remove_files(*paths: Path) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not remove %s: %s", path, exc)


class Downloader:
    """Downloads for one client: its transport, configuration and file threads."""

    def __init__(
        self,
        transport: Transport,
        config: ClientConfig,
        files: concurrent.futures.Executor,
        background: Callable[[Awaitable[Any]], None],
    ) -> None:
        self._transport = transport
        self.config = config
        self._files = files
        self._background = background

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._files, function, *args)

    # --- one file, retried ------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        directory: str | os.PathLike[str],
        filename: str | None,
        overwrite: bool,
        keep_partial: bool,
        expected_format: str | None,
    ) -> Path:
        """The file at ``url`` into ``directory``; its final path (see ``VOClient.download``)."""
        name = safe_filename(filename) if filename is not None else url_filename(url)
        resume_of = url if keep_partial else None
        place, size, resume = await self._in_thread(
            self._place, Path(directory), name, overwrite, resume_of
        )
        report = fetched.get()
        if size is not None:
            if report is not None:
                report.path, report.size, report.existed = place.final, size, True
            return place.final
        detect_links = not is_datalink_format(expected_format)
        known = [resume]  # the first attempt's resume point, found with the place

        async def attempt(budget: Budget) -> tuple[int, bool]:
            budget.begin()
            start = known.pop() if known else None
            return await self._attempt(
                url, place, keep_partial, detect_links, start, expected_format
            )

        try:
            try:
                length, committed = await self._transport.with_retries(url, attempt)
                if not committed:
                    await self._in_thread(self._commit, place, expected_format, url)
            except OSError as exc:
                raise StorageError(f"can't write {place.final}: {exc}") from exc
        except BaseException as exc:
            if report is not None:
                report.path = None
            doomed = () if keep_partial and resumable(exc) else (place.part, place.note)
            removal = asyncio.ensure_future(self._remove(*doomed))
            try:
                await asyncio.shield(removal)
            except asyncio.CancelledError:
                self._background(removal)
            raise
        if report is not None:
            report.path, report.size, report.existed = place.final, length, False
        return place.final

    def _place(
        self, folder: Path, name: str, overwrite: bool, resume_of: str | None
    ) -> tuple[_Place, int | None, tuple[int, str | None]]:
        """(Thread.) The directory made, the names; the size of the complete file there
        already (None: none, or ``overwrite``); and, for ``resume_of`` (a URL), the
        resume point of a kept part."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"can't create the directory {folder}: {exc}") from exc
        place = _Place.of(folder, name)
        if not overwrite:
            try:
                size = place.final.stat().st_size
            except OSError as exc:
                if exc.errno not in ABSENT:  # (as Path.exists() tells them)
                    raise
            else:
                # Complete already (renames are atomic); what a killed run left beside
                # it is stale.
                _remove_files(place.part, place.note)
                return place, size, (0, None)
        resume = self._resume_point(resume_of, place) if resume_of is not None else (0, None)
        return place, None, resume

    async def _remove(self, *paths: Path) -> None:
        if paths:
            await self._in_thread(_remove_files, *paths)

    # --- one attempt ------------------------------------------------------------------

    async def _attempt(
        self,
        url: str,
        place: _Place,
        keep_partial: bool,
        detect_links: bool,
        known: tuple[int, str | None] | None,
        expected_format: str | None,
    ) -> tuple[int, bool]:
        """One request; the file's length, and whether it was checked and renamed into
        place (not yet if the kept part was found whole: the caller commits it)."""
        offset, validator = 0, None
        if keep_partial:
            if known is None:
                known = await self._in_thread(self._resume_point, url, place)
            offset, validator = known
        headers = {"Accept-Encoding": "identity"}
        if offset and validator:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = validator
        part: PartFile | None = None
        rest: list[bytes] = []
        try:
            async with self._transport.stream(url, headers=headers, ok=(200, 206, 416)) as stream:
                start = await self._answer(stream, url, place, offset, detect_links)
                if start is None:
                    return offset, False  # the kept part is the whole file
                offset, total = start
                note = _note(stream, url, total) if keep_partial else None
                part = PartFile.open(
                    place.part,
                    bool(offset),
                    self._files,
                    self.config.fsync,
                    None if note is None else (place.note, note),
                )
                received, rest, head = await self._receive(stream, part, place, url, offset, total)
        except BaseException:
            if part is not None:
                part.keep(rest)
                await part.abandon()
            raise
        # After the response: the host's connection slot is free while the disk works.
        whole = total is None or offset + received == total
        commit = partial(self._commit, place, expected_format, url, head) if whole else None
        await part.finish(rest, self.config.fsync, commit)
        if not whole:
            raise PayloadError(
                f"received {offset + received} bytes, {total} announced", url=url, retryable=True
            )
        return offset + received, True

    def _resume_point(self, url: str, place: _Place) -> tuple[int, str | None]:
        """(Thread.) (bytes already in the ``.part``, validator) if resumable, else (0, None)."""
        try:
            saved = json.loads(place.note.read_text(encoding="utf-8"))
            size = place.part.stat().st_size
        except (OSError, ValueError):
            return 0, None
        if not isinstance(saved, dict) or saved.get("url") != url:
            return 0, None
        etag = saved.get("etag")
        validator = etag if isinstance(etag, str) and not etag.startswith("W/") else None
        validator = validator or saved.get("last_modified")
        if not validator or size <= 0:
            return 0, None
        return size, str(validator)

    async def _answer(
        self, stream: Stream, url: str, place: _Place, offset: int, detect_links: bool
    ) -> tuple[int, int | None] | None:
        """(offset to write at, total length) the answer gives; None: nothing left to fetch."""
        if stream.status == 204:
            raise FormatError(
                "the server answered 204 No Content: nothing to save "
                "(a SODA cutout outside the image, say)",
                url=url,
            )
        if (
            detect_links
            and stream.status == 200
            and is_datalink_format(stream.headers.get("Content-Type"))
        ):
            raise LinksInstead(await read_capped(stream, url), url)
        if stream.status == 416:
            # Nothing left to send: the .part may already hold the whole file.
            length = content_range_total(stream.headers.get("Content-Range"))
            if offset and length == offset:
                return None
            await self._remove(place.part, place.note)
            raise PayloadError(
                "the server can't serve the rest of the kept part; starting over",
                url=url,
                retryable=True,
            )
        if stream.status == 206:
            start, total = content_range(stream.headers.get("Content-Range"))
            if start != offset:
                await self._remove(place.part, place.note)
                raise PayloadError(
                    f"asked for bytes from {offset}, got a range from {start}",
                    url=url,
                    retryable=True,
                )
            return offset, total
        return 0, stream.content_length  # a full answer: start over, never append

    async def _receive(
        self,
        stream: Stream,
        part: PartFile,
        place: _Place,
        url: str,
        offset: int,
        total: int | None,
    ) -> tuple[int, list[bytes], bytes | None]:
        """Stream the body into ``part``; the bytes received, the last pieces, not yet
        written (the caller writes them as it finishes the file), and the file's first
        :data:`HEAD_BYTES` (None if the body continues a kept part: its head is on disk)."""
        chunk_bytes = self.config.chunk_bytes
        limit = total if total is not None else self.config.max_fetch_bytes
        received = 0
        gathered: list[bytes] = []
        size = 0
        head: bytes | None = b"" if offset == 0 else None
        try:
            async for piece in stream.pieces():
                received += len(piece)
                if offset + received > limit:
                    gathered = []
                    await self._remove(place.part, place.note)
                    if total is not None:
                        # More than announced (a body gzipped against our wish, a
                        # bomb): stop now, and keep nothing of it.
                        raise PayloadError(
                            f"the body runs past the {total} bytes announced", url=url
                        )
                    raise TooLargeError(
                        f"a download without a length passed max_fetch_bytes "
                        f"({self.config.max_fetch_bytes})",
                        url=url,
                    )
                if head is not None and len(head) < HEAD_BYTES:
                    head += piece[: HEAD_BYTES - len(head)]  # (a copy of the head only)
                gathered.append(piece)
                size += len(piece)
                if size >= chunk_bytes:
                    await part.write(gathered)  # (kept below if cancelled before it started)
                    gathered, size = [], 0
        except BaseException:
            # Cut, reset, stalled or cancelled: every byte received goes to disk,
            # so that a resume asks only for the rest.
            part.keep(gathered)
            raise
        return received, gathered, head

    # --- verify and rename --------------------------------------------------------------

    @staticmethod
    def _commit(
        place: _Place, expected_format: str | None, url: str, head: bytes | None = None
    ) -> None:
        """(Thread.) The content checked against its format (its ``head`` as received,
        else read from the file), renamed into place, note gone."""
        problem = head_problem(place.part, expected_format, url, head)
        if problem is not None:
            raise problem
        os.replace(place.part, place.final)
        _remove_files(place.note)
