"""DataLink for the client: a record's links document fetched, and the files it leads to.

:class:`DataLinkPlanner` fetches and parses a DataLink document (the record's
access URL when its format says DataLink, else where the answer's service
descriptor points), plans the datasets with
:func:`voharvest.protocol.datalink.plan_datasets` (a ``#this`` link of the
format asked for, or a SODA cutout around a position), and hands each file to
the :class:`~voharvest._downloader.Downloader`. A plain URL goes straight to
the downloader; one that answers with a DataLink document instead of a file is
resolved the same way. :func:`raise_dali_error` turns an HTTP error that
carried a DALI error document into the service's own QueryError.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._checks import http_url, position_degrees
from ._downloads import MAX_LINKS_BYTES, LinksInstead, plain_format
from ._exceptions import (
    AuthenticationError,
    DataLinkError,
    FormatError,
    HTTPStatusError,
    ParameterError,
    QueryError,
)
from ._media import is_datalink_format
from .naming import dataset_filename
from .protocol import datalink
from .protocol.soda import Cutout

if TYPE_CHECKING:
    from ._downloader import Downloader
    from .protocol.datalink import DataLinks
    from .transport import Transport

__all__ = ["DataLinkPlanner", "raise_dali_error"]

T = TypeVar("T")


class Parse(Protocol):
    """How the client parses a document: ``parse(body, url=url)``, off the loop if large."""

    async def __call__(self, parse: Callable[..., T], body: bytes, url: str | None) -> T: ...


def raise_dali_error(exc: HTTPStatusError, url: str) -> None:
    """QueryError with the service's message if an HTTP error carried a DALI error VOTable."""
    if "QUERY_STATUS" not in exc.body or isinstance(exc, AuthenticationError):
        return
    try:
        from .protocol import votable

        votable.decode(exc.body.encode("utf-8"), url=url)
    except QueryError as query_error:
        query_error.status = exc.status
        raise query_error from exc
    except FormatError:
        pass


def _keep_links(source: Any, links: DataLinks) -> None:
    """Leave a record's parsed DataLink document on it (``record.links``)."""
    keep = getattr(source, "keep_links", None)
    if keep is not None:
        keep(links)


class DataLinkPlanner:
    """One client's DataLink documents and the downloads they lead to; see the module doc."""

    def __init__(
        self,
        transport: Transport,
        *,
        check_open: Callable[[], None],
        downloader: Callable[[], Downloader],
        parse: Parse,
        resolve_position: Callable[[Any], Awaitable[Any]],
    ) -> None:
        """``check_open`` raises ClientStateError unless the client is open;
        ``downloader`` is the open client's downloader (or that error)."""
        self._transport = transport
        self._check_open = check_open
        self._downloader = downloader
        self._parse = parse
        self._resolve_position = resolve_position

    async def datalinks(self, source: Any) -> DataLinks:
        """The DataLink document of a record (or at a URL), parsed (``VOClient.datalinks``)."""
        self._check_open()
        found = source if isinstance(source, str) else getattr(source, "datalink_url", None)
        if not found:
            raise DataLinkError(f"{source!r} has no DataLink document")
        url = http_url(found)
        body = await self._get_document(url)
        links = await self._parse(datalink.parse_datalink, body, url)
        _keep_links(source, links)
        return links

    async def _get_document(self, url: str) -> bytes:
        try:
            answer = await self._transport.request("GET", url, max_bytes=MAX_LINKS_BYTES)
        except HTTPStatusError as exc:
            raise_dali_error(exc, url)
            raise
        return answer.body

    async def datasets(
        self, source: Any, format: str | None, cutout: Any, position: Any, fallback: str
    ) -> list[datalink.Dataset]:
        """The files a record's DataLink document leads to (``VOClient.datasets``, its
        arguments in its order)."""
        shape = Cutout.parse(cutout) if cutout is not None else None
        centre = await self._cutout_centre(source, position) if shape is not None else None
        links = await self.datalinks(source)
        did = getattr(source, "publisher_did", None) if not isinstance(source, str) else None
        chosen = did if did and did in links.ids else None
        return datalink.plan_datasets(
            links,
            format=plain_format(format),
            dataset_id=chosen,
            cutout=shape,
            position=centre,
            fallback=fallback,
        )

    async def _cutout_centre(self, source: Any, position: Any) -> tuple[float, float]:
        if position is None:
            ra, dec = getattr(source, "ra", None), getattr(source, "dec", None)
            if ra is None or dec is None:
                raise ParameterError("a cutout needs a position (the record has none)")
            position = (ra, dec)
        return position_degrees(await self._resolve_position(position), "position")

    async def download(
        self,
        source: Any,
        url: str,
        directory: str | os.PathLike[str],
        filename: str | None,
        overwrite: bool,
        keep_partial: bool,
        expected_format: str | None,
        cutout: Any,
        position: Any,
        *,
        single: bool,
    ) -> list[Path]:
        """``VOClient.download`` (``single``) and ``download_all`` of ``source`` at ``url``."""
        record_format = None if isinstance(source, str) else getattr(source, "format", None)
        wanted = plain_format(expected_format)
        linked = cutout is not None or is_datalink_format(record_format)
        if linked and not is_datalink_format(expected_format):
            planned = await self.datasets(
                source, format=wanted, cutout=cutout, position=position, fallback="fail"
            )
            return await self._fetch_planned(
                planned, directory, filename, overwrite, keep_partial, wanted, single
            )
        if expected_format is None:
            expected_format = record_format
        try:
            return [
                await self._downloader().fetch(
                    url, directory, filename, overwrite, keep_partial, expected_format
                )
            ]
        except LinksInstead as found:
            # The URL answered with a DataLink document: take what it points at.
            links = await self._parse(datalink.parse_datalink, found.body, found.url)
            _keep_links(source, links)
            planned = datalink.plan_datasets(links, format=wanted)
            return await self._fetch_planned(
                planned, directory, filename, overwrite, keep_partial, wanted, single
            )

    async def _fetch_planned(
        self,
        planned: list[datalink.Dataset],
        directory: str | os.PathLike[str],
        filename: str | None,
        overwrite: bool,
        keep_partial: bool,
        wanted: str | None,
        single: bool,
    ) -> list[Path]:
        if not planned:
            raise DataLinkError("the DataLink document leads to no file to download")
        if single and len(planned) > 1:
            formats = ", ".join(sorted({d.format or "unknown type" for d in planned}))
            raise ParameterError(
                f"the DataLink document leads to {len(planned)} files ({formats}); "
                "pass expected_format= to pick one, or use download_all()"
            )
        paths = []
        for dataset in planned:
            if is_datalink_format(dataset.format):
                raise FormatError(
                    "a DataLink document points at another DataLink document as its dataset",
                    url=dataset.via,
                )
            single_name = filename is not None and len(planned) == 1
            name = filename if single_name else dataset_filename(dataset)
            try:
                path = await self._downloader().fetch(
                    dataset.url,
                    directory,
                    name,
                    overwrite,
                    keep_partial,
                    dataset.format or wanted,
                )
            except LinksInstead as found:
                raise FormatError(
                    "a DataLink document points at another DataLink document as its dataset",
                    url=found.url,
                ) from None
            paths.append(path)
        return paths
