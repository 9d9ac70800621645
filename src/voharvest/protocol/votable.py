"""VOTable answers: bytes to results, with the IVOA status conventions.

- ``QUERY_STATUS`` is looked for at the root, in the results RESOURCE and in its
  TABLE; where several are given the last one in the document wins (DALI lets a
  service append an ERROR or OVERFLOW found while streaming).
- ERROR raises :class:`~voharvest.QueryError` with the server's own message;
  OVERFLOW emits :class:`~voharvest.OverflowWarning` and flags the result.
- A body that isn't a VOTable (an HTML error page, plain text, a truncated or
  malformed document) raises :class:`~voharvest.FormatError` quoting its start;
  so does a VOTable without a table. A document type declaration that only
  names an external DTD (VOTable 1.0/1.1 services write one) is accepted and
  never fetched; an internal subset, entity declarations and entity references
  beyond XML's five are refused (they carry entity attacks).

Parsing is pure CPU work on ``bytes``; the client decides where it runs.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lxml import etree

from .._exceptions import FormatError, OverflowWarning, QueryError
from . import _xml
from ._descriptors import ServiceDescriptor, descriptors_of
from ._lean import Field, read_lean
from ._xml import snippet
from .records import RegistryResults, SIAResults, TableResults, column_values, sia_version

if TYPE_CHECKING:
    from astropy.io.votable.tree import TableElement, VOTableFile
    from astropy.table import Table

__all__ = [
    "Decoded",
    "QueryStatus",
    "check_prolog",
    "decode",
    "parse_registry",
    "parse_sia",
    "parse_table",
    "query_status",
    "read_votable",
    "registry_results",
    "results_table",
    "sia_results",
    "table_results",
]


@dataclass(frozen=True)
class QueryStatus:
    """The verdict of a DAL answer: ``OK``, ``ERROR`` or ``OVERFLOW`` ('' if none was given)."""

    value: str
    message: str = ""

    @property
    def is_error(self) -> bool:
        return self.value == "ERROR"

    @property
    def is_overflow(self) -> bool:
        return self.value == "OVERFLOW"


def check_prolog(data: bytes, url: str | None = None) -> None:
    """FormatError unless ``data`` starts like a VOTable that is safe to parse.

    A document type declaration naming an external DTD is accepted (never
    fetched); an internal subset, entity declarations and references to
    entities beyond XML's five are refused (see :mod:`._xml`).
    """
    prolog = _xml.check_prolog(data, url, what="VOTable")
    if prolog.root.upper() != "VOTABLE":
        raise FormatError(
            f"expected a VOTable, got a <{prolog.root}> document: {snippet(data)!r}",
            snippet=snippet(data),
            url=url,
        )


def read_votable(data: bytes, *, url: str | None = None) -> VOTableFile:
    """Parse ``data`` with astropy, translating every failure into FormatError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    check_prolog(data, url)
    return _astropy_votable(data, url)


def _astropy_votable(data: bytes, url: str | None) -> VOTableFile:
    """astropy's tree of a document whose prolog was checked."""
    from astropy.io.votable import parse as _astropy_parse

    try:
        # verify="ignore": astropy's spec warnings are about the service, not for our user.
        return _astropy_parse(io.BytesIO(data), verify="ignore", invalid="mask")
    except Exception as exc:  # astropy raises many types (ValueError, ExpatError, ...)
        raise FormatError(f"malformed VOTable: {exc}", snippet=snippet(data), url=url) from exc


def _results_resource(votable: VOTableFile) -> Any:
    resources = list(votable.resources)
    for resource in resources:
        if (resource.type or "").lower() == "results":
            return resource
    return resources[0] if resources else None


def query_status(votable: VOTableFile) -> QueryStatus:
    """The QUERY_STATUS of a parsed answer; the last one in document order wins."""
    resource = _results_resource(votable)
    candidates = list(votable.infos)
    if resource is not None:
        candidates.extend(resource.infos)
        for table in resource.tables:
            candidates.extend(table.infos)
    statuses = [
        (getattr(info, "_pos", None) or (0, 0), order, info)
        for order, info in enumerate(candidates)
        if (info.name or "").upper() == "QUERY_STATUS"
    ]
    if not statuses:
        return QueryStatus("")
    *_, last = sorted(statuses, key=lambda item: (item[0], item[1]))
    info = last[2]
    message = (info.content or "").strip()
    return QueryStatus((info.value or "").strip().upper(), message)


def results_table(votable: VOTableFile, *, url: str | None = None) -> TableElement:
    """The first table of the results resource, or FormatError."""
    resource = _results_resource(votable)
    if resource is None:
        raise FormatError("the VOTable has no RESOURCE", url=url)
    tables = list(resource.tables) or [t for inner in resource.resources for t in inner.tables]
    if not tables:
        raise FormatError("the VOTable's results RESOURCE has no TABLE", url=url)
    if not tables[0].fields:
        raise FormatError("the VOTable's results TABLE has no FIELD", url=url)
    return tables[0]


@dataclass(frozen=True)
class Decoded:
    """A checked answer: its results table as plain columns, and its status.

    Picklable, so :func:`decode` can run in a worker process; turning it into
    results (:func:`table_results`, :func:`sia_results`, :func:`registry_results`)
    is cheap and happens where the answer is used. ``columns[i]`` holds the
    values of ``fields[i]`` (None where null), or None where the lean reader
    left the field to astropy: such a column, and :meth:`to_table`, are read
    from astropy's table of ``source`` (the document) on demand.
    """

    fields: tuple[Field, ...]
    columns: tuple[list[Any] | None, ...]
    rows: int
    status: QueryStatus
    url: str | None = None
    #: Service descriptors the document carries (DataLink, SODA, ...).
    descriptors: tuple[ServiceDescriptor, ...] = ()
    #: FIELD ID -> column name, for descriptor parameters that ``ref`` a column.
    field_ids: Mapping[str, str] = field(default_factory=dict)
    #: The document itself, for what is read with astropy on demand.
    source: bytes | None = field(default=None, repr=False, compare=False)

    def with_source(self, source: bytes) -> Decoded:
        """This answer with its document attached (after decoding in a worker process)."""
        return replace(self, source=source)

    def to_table(self) -> Table:
        """The results table as astropy reads it (column units, masks, UCDs in ``meta``)."""
        if self.source is None:
            raise FormatError("the answer's document was not kept", url=self.url)
        votable = read_votable(self.source, url=self.url)
        return _astropy_table(results_table(votable, url=self.url), self.url)


def _astropy_table(element: TableElement, url: str | None) -> Table:
    try:
        return element.to_table(use_names_over_ids=True)
    except Exception as exc:  # astropy conversion of odd column metadata
        raise FormatError(f"unreadable results table: {exc}", url=url) from exc


def _field_ids(
    fields: tuple[Field, ...], descriptors: tuple[ServiceDescriptor, ...]
) -> dict[str, str]:
    return {f.id: f.name for f in fields if f.id} if descriptors else {}


def decode(data: bytes, *, url: str | None = None, keep_source: bool = True) -> Decoded:
    """Parse and check an answer: QueryError on ERROR, FormatError if it has no table.

    The lean reader (:mod:`._lean`) reads TABLEDATA answers; astropy
    reads what it leaves (other serialisations, unusual layouts, malformed
    documents, whose error messages are astropy's). ``keep_source=False``
    leaves the document out of the result, for a worker process whose caller
    has the bytes already (:meth:`Decoded.with_source`).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    check_prolog(data, url)
    try:
        lean = read_lean(data)
    except (etree.LxmlError, ValueError):
        lean = None  # astropy reads it again and says what is wrong
    if lean is None:
        return _decode_with_astropy(data, url, keep_source)
    status = QueryStatus(lean.status, lean.message)
    if status.is_error:
        raise QueryError(status.message or "the service reported an error", url=url)
    descriptors = lean.descriptors  # read from the tree the lean reader parsed
    return Decoded(
        lean.fields,
        lean.columns,
        lean.rows,
        status,
        url,
        descriptors,
        _field_ids(lean.fields, descriptors),
        data if keep_source else None,
    )


def _decode_with_astropy(data: bytes, url: str | None, keep_source: bool) -> Decoded:
    """:func:`decode` by astropy, for a document whose prolog was checked."""
    votable = _astropy_votable(data, url)
    status = query_status(votable)
    if status.is_error:
        raise QueryError(status.message or "the service reported an error", url=url)
    element = results_table(votable, url=url)
    table = _astropy_table(element, url)
    fields = tuple(
        Field(
            name=str(name),
            id=str(f.ID) if f.ID else None,
            datatype=str(f.datatype or "char"),
            arraysize=str(f.arraysize) if f.arraysize else None,
            unit=str(f.unit) if f.unit is not None else None,
            ucd=str(f.ucd) if f.ucd else None,
            utype=str(f.utype) if f.utype else None,
            xtype=str(f.xtype) if f.xtype else None,
        )
        for name, f in zip(table.colnames, element.fields, strict=True)
    )
    columns = tuple(column_values(table[name]) for name in table.colnames)
    descriptors = descriptors_of(data, url=url)
    return Decoded(
        fields,
        columns,
        len(table),
        status,
        url,
        descriptors,
        _field_ids(fields, descriptors),
        data if keep_source else None,
    )


def _warn_if_overflow(decoded: Decoded, stacklevel: int) -> bool:
    if decoded.status.is_overflow:
        where = f" from {decoded.url}" if decoded.url else ""
        warnings.warn(
            f"the answer{where} was truncated by the service (QUERY_STATUS=OVERFLOW)",
            OverflowWarning,
            stacklevel=stacklevel + 1,
        )
    return decoded.status.is_overflow


def table_results(decoded: Decoded, *, _stacklevel: int = 2) -> TableResults:
    """Generic table results of a decoded answer (warns on OVERFLOW)."""
    overflow = _warn_if_overflow(decoded, _stacklevel + 1)
    return TableResults(decoded, overflow=overflow)


def sia_results(decoded: Decoded, *, _stacklevel: int = 2) -> SIAResults:
    """SIA results of a decoded answer, version told apart from its columns."""
    version = sia_version(decoded.fields)
    if version is None:
        raise FormatError(
            "not an SIA answer: no access reference column "
            "(UCD VOX:Image_AccessReference or ObsCore access_url)",
            url=decoded.url,
        )
    overflow = _warn_if_overflow(decoded, _stacklevel + 1)
    return SIAResults(decoded, version=version, overflow=overflow)


def registry_results(decoded: Decoded, *, _stacklevel: int = 2) -> RegistryResults:
    """Registry resources of a decoded RegTAP answer."""
    overflow = _warn_if_overflow(decoded, _stacklevel + 1)
    return RegistryResults(decoded, overflow=overflow)


def parse_table(data: bytes, *, url: str | None = None) -> TableResults:
    """Any DAL/TAP answer as generic table results."""
    return table_results(decode(data, url=url), _stacklevel=3)


def parse_sia(data: bytes, *, url: str | None = None) -> SIAResults:
    """An SIA answer, version 1 (UCDs) or 2 (ObsCore names) told apart from its columns."""
    return sia_results(decode(data, url=url), _stacklevel=3)


def parse_registry(data: bytes, *, url: str | None = None) -> RegistryResults:
    """A RegTAP answer as registry resources."""
    return registry_results(decode(data, url=url), _stacklevel=3)
