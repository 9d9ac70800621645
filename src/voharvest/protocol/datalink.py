"""DataLink documents and service descriptors (IVOA DataLink 1.0/1.1, DALI).

A DataLink ``{links}`` answer is a VOTable whose results table has a row per
link: ``ID`` (the dataset), ``access_url``, ``service_def`` (the ID of a
service descriptor RESOURCE, for links that are services), ``error_message``,
``description``, ``semantics`` (``#this``, ``#preview``, ``#progenitor``, ...
from the IVOA datalink vocabulary), ``content_type``, ``content_length``, and
in 1.1 ``content_qualifier`` and ``local_semantics``.

Service descriptors are ``<RESOURCE type="meta" utype="adhoc:service">``
elements: an ``accessURL``, a ``standardID`` (SODA sync/async, DataLink
links, ...) and a GROUP ``inputParams`` whose PARAMs are either fixed (a
``value``), taken from a column of the row they describe (``ref`` to a FIELD
ID), or free for the caller (empty ``value``, often with MIN/MAX or OPTIONs).
Any VOTable may carry them: an ObsCore answer whose rows point at their
DataLink documents through a ``links-1.0`` descriptor, for one.

Everything here is pure: bytes in, dataclasses out.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import DataLinkError, FormatError, ParameterError, QueryError
from ._descriptors import (
    DATALINK_LINKS,
    DATALINK_MIME,
    SODA_ASYNC,
    SODA_SYNC,
    InputParam,
    ServiceDescriptor,
    descriptors_of,
    is_datalink_format,
    same_format,
)
from .soda import Cutout, soda_params

__all__ = [
    "DATALINK_LINKS",
    "DATALINK_MIME",
    "SODA_ASYNC",
    "SODA_SYNC",
    "DataLinks",
    "Dataset",
    "InputParam",
    "Link",
    "ServiceDescriptor",
    "descriptors_of",
    "is_datalink_format",
    "parse_datalink",
    "plan_datasets",
    "same_format",
]


# Terms of the IVOA datalink vocabulary (http://www.ivoa.net/rdf/datalink/core)
# narrower than the ones a harvest keeps apart.
_NARROWER = {
    "preview": ("preview", "preview-image", "preview-plot"),
    "progenitor": ("progenitor",),
}


@dataclass(frozen=True)
class Link:
    """One row of a DataLink document."""

    id: str
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    semantics: str = ""
    content_type: str | None = None
    content_length: int | None = None
    content_qualifier: str | None = None
    local_semantics: str | None = None

    def _term(self) -> str:
        term = self.semantics.strip()
        return term[1:].lower() if term.startswith("#") else term.lower()

    @property
    def is_error(self) -> bool:
        return bool(self.error_message)

    @property
    def is_this(self) -> bool:
        return self._term() == "this"

    @property
    def is_preview(self) -> bool:
        return self._term() in _NARROWER["preview"]

    @property
    def is_progenitor(self) -> bool:
        return self._term() in _NARROWER["progenitor"]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class DataLinks:
    """A parsed DataLink document: its links and its service descriptors."""

    links: tuple[Link, ...]
    descriptors: tuple[ServiceDescriptor, ...] = ()
    url: str | None = None
    overflow: bool = False
    _by_id: Mapping[str, ServiceDescriptor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self._by_id:
            object.__setattr__(
                self, "_by_id", {d.id: d for d in self.descriptors if d.id is not None}
            )

    def __len__(self) -> int:
        return len(self.links)

    def __iter__(self) -> Any:
        return iter(self.links)

    @property
    def ids(self) -> list[str]:
        """The dataset IDs the document speaks of, in order of first mention."""
        return list(dict.fromkeys(link.id for link in self.links))

    def for_id(self, dataset_id: str) -> DataLinks:
        """The links of one dataset (a document may answer for several)."""
        return DataLinks(
            tuple(link for link in self.links if link.id == dataset_id),
            self.descriptors,
            self.url,
            self.overflow,
            self._by_id,
        )

    def by_semantics(self, term: str) -> list[Link]:
        """Links whose semantics is ``term`` (``#preview`` or ``preview``), errors left out."""
        wanted = term.lstrip("#").lower()
        return [
            link
            for link in self.links
            if not link.is_error and link.semantics.strip().lstrip("#").lower() == wanted
        ]

    @property
    def errors(self) -> list[Link]:
        return [link for link in self.links if link.is_error]

    @property
    def previews(self) -> list[Link]:
        """``#preview`` links (and narrower terms such as ``#preview-image``)."""
        return [lk for lk in self.links if lk.is_preview and not lk.is_error and lk.access_url]

    @property
    def progenitors(self) -> list[Link]:
        return [lk for lk in self.links if lk.is_progenitor and not lk.is_error and lk.access_url]

    def this(self, format: str | None = None) -> list[Link]:
        """The datasets themselves: ``#this`` links with a URL, of ``format`` if given."""
        found = [
            link for link in self.links if link.is_this and not link.is_error and link.access_url
        ]
        if format is not None:
            found = [link for link in found if same_format(link.content_type, format)]
        return found

    def descriptor(self, link: Link) -> ServiceDescriptor | None:
        """The service descriptor a link's ``service_def`` names."""
        if not link.service_def:
            return None
        return self._by_id.get(link.service_def)

    def soda_sync(self, dataset_id: str | None = None) -> tuple[ServiceDescriptor, Link] | None:
        """A synchronous SODA service on the dataset, and the link offering it.

        Looked for among the links (of ``dataset_id`` if given) that name a
        descriptor with the SODA sync standard id.
        """
        for link in self.links:
            if link.is_error or (dataset_id is not None and link.id != dataset_id):
                continue
            descriptor = self.descriptor(link)
            if descriptor is not None and descriptor.is_soda_sync and descriptor.access_url:
                return descriptor, link
        return None

    def dataset(self, format: str | None = None, dataset_id: str | None = None) -> list[Link]:
        """The ``#this`` links to fetch, or DataLinkError saying why there are none.

        An error row for the dataset (and no ``#this``) raises with the
        server's message; a document with ``#this`` links in other formats
        only says which formats it has.
        """
        links = self if dataset_id is None else self.for_id(dataset_id)
        found = links.this(format)
        if found:
            return found
        subject = f" for {dataset_id}" if dataset_id else ""
        if links.errors:
            first = links.errors[0]
            raise DataLinkError(
                f"the DataLink service reports an error{subject}: {first.error_message}",
                dataset_id=first.id,
                url=self.url,
            )
        others = links.this()
        if others:
            offered = ", ".join(sorted({lk.content_type or "unknown type" for lk in others}))
            raise DataLinkError(
                f"no #this link{subject} in {format}; the document offers {offered}",
                dataset_id=dataset_id or others[0].id,
                url=self.url,
            )
        raise DataLinkError(
            f"the DataLink document has no #this link{subject}",
            dataset_id=dataset_id,
            url=self.url,
        )


_COLUMNS = (
    "id",
    "access_url",
    "service_def",
    "error_message",
    "description",
    "semantics",
    "content_type",
    "content_length",
    "content_qualifier",
    "local_semantics",
)


def _length(value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def parse_datalink(data: bytes, *, url: str | None = None) -> DataLinks:
    """A DataLink ``{links}`` answer: QueryError on QUERY_STATUS=ERROR, FormatError if
    it is not a links table (no ID / semantics / access_url columns)."""
    # (VOTable reading imported here: a harvest that meets no DataLink never loads it)
    from .votable import query_status, read_votable, results_table

    votable = read_votable(data, url=url)
    status = query_status(votable)
    if status.is_error:
        raise QueryError(status.message or "the DataLink service reported an error", url=url)
    element = results_table(votable, url=url)
    names = {str(f.name or f.ID or "").lower(): i for i, f in enumerate(element.fields)}
    missing = [n for n in ("id", "access_url", "semantics") if n not in names]
    if missing:
        raise FormatError(
            f"not a DataLink document: no {', '.join(missing)} column "
            f"(columns: {', '.join(names) or 'none'})",
            url=url,
        )
    array = element.array
    mask = getattr(array, "mask", None)
    keys = [str(f.name or f.ID) for f in element.fields]
    links: list[Link] = []
    for index in range(len(array)):
        row: dict[str, Any] = {}
        for name in _COLUMNS:
            position = names.get(name)
            if position is None:
                row[name] = None
                continue
            key = keys[position]
            masked = mask is not None and bool(mask[key][index])
            row[name] = None if masked else array[key][index]
        links.append(
            Link(
                id=_text(row["id"]) or "",
                access_url=_text(row["access_url"]),
                service_def=_text(row["service_def"]),
                error_message=_text(row["error_message"]),
                description=_text(row["description"]),
                semantics=_text(row["semantics"]) or "",
                content_type=_text(row["content_type"]),
                content_length=_length(row["content_length"]),
                content_qualifier=_text(row["content_qualifier"]),
                local_semantics=_text(row["local_semantics"]),
            )
        )
    return DataLinks(tuple(links), descriptors_of(data, url=url), url, status.is_overflow)


@dataclass(frozen=True)
class Dataset:
    """One file a DataLink document leads to: the dataset itself, or a cutout of it.

    ``via`` is the DataLink document's URL; ``mode`` is ``full`` or
    ``cutout`` (then ``region`` says what was cut, e.g. ``CIRCLE ra dec r``,
    and ``cut_from`` is the URL of the full dataset, where the document gives
    one). File names are not the protocol's to choose: see :mod:`voharvest.naming`.
    """

    url: str
    format: str | None
    via: str | None
    id: str = ""
    semantics: str = "#this"
    mode: str = "full"
    region: str | None = None
    previews: tuple[str, ...] = ()
    progenitors: tuple[str, ...] = ()
    cut_from: str | None = None

    @property
    def name(self) -> str:
        """Deprecated: the file name ``VOClient.download`` gives this dataset;
        use :func:`voharvest.naming.dataset_filename`."""
        warnings.warn(
            "Dataset.name is deprecated; use voharvest.naming.dataset_filename(dataset)",
            DeprecationWarning,
            stacklevel=2,
        )
        from ..naming import dataset_filename  # (the names are the layer above's)

        return dataset_filename(self)


def plan_datasets(
    links: DataLinks,
    *,
    format: str | None = None,
    dataset_id: str | None = None,
    cutout: Cutout | None = None,
    position: tuple[float, float] | None = None,
    fallback: str = "full",
) -> list[Dataset]:
    """The files to fetch for the datasets of a DataLink document.

    Without ``cutout``: the ``#this`` links (of ``format`` if given; for
    every dataset the document names unless ``dataset_id``). With
    ``cutout`` (and the ``position`` to cut around): a synchronous SODA
    request per dataset; where the document offers no SODA service,
    ``fallback`` says what happens: ``full`` takes the ``#this`` links,
    ``skip`` takes nothing for that dataset, ``fail`` raises DataLinkError.
    An error row, or no ``#this`` link in ``format``, raises DataLinkError.
    """
    if fallback not in ("full", "skip", "fail"):
        raise ParameterError(f"fallback: expected full, skip or fail, got {fallback!r}")
    if cutout is not None and position is None:
        raise ParameterError("a cutout needs the position to cut around")
    ids = [dataset_id] if dataset_id is not None else links.ids
    if not ids:
        raise DataLinkError("the DataLink document has no links", url=links.url)
    planned: list[Dataset] = []
    for one in ids:
        mine = links.for_id(one)
        previews = tuple(lk.access_url for lk in mine.previews if lk.access_url)
        progenitors = tuple(lk.access_url for lk in mine.progenitors if lk.access_url)
        if cutout is not None and position is not None:
            found = mine.soda_sync(one)
            if found is not None:
                descriptor, link = found
                this = mine.this(format) or mine.this()
                try:
                    url = descriptor.url(soda_params(descriptor, *position, cutout))
                except ParameterError as exc:
                    raise DataLinkError(
                        f"can't use the SODA service for {one}: {exc}",
                        dataset_id=one,
                        url=links.url,
                    ) from exc
                kind = (this[0].content_type if this else None) or link.content_type or format
                base = this[0].access_url if this else None
                planned.append(
                    Dataset(
                        url=url,
                        format=kind,
                        via=links.url,
                        id=one,
                        semantics=link.semantics,
                        mode="cutout",
                        region=cutout.describe(*position),
                        cut_from=base,
                        previews=previews,
                        progenitors=progenitors,
                    )
                )
                continue
            if mine.errors and not mine.this():
                mine.dataset(None, one)  # the server's own error for it, not "no SODA"
            if fallback == "skip":
                continue
            if fallback == "fail":
                raise DataLinkError(
                    f"the DataLink document offers no SODA service to cut {one}",
                    dataset_id=one,
                    url=links.url,
                )
        for link in mine.dataset(format, one):
            assert link.access_url is not None
            planned.append(
                Dataset(
                    url=link.access_url,
                    format=link.content_type or format,
                    via=links.url,
                    id=one,
                    semantics=link.semantics,
                    previews=previews,
                    progenitors=progenitors,
                )
            )
    return planned
