"""Service descriptors (the ``adhoc:service`` RESOURCEs of VOTables).

A descriptor (DataLink 1.0 section 4) names a service (``accessURL``,
``standardID``) and its input parameters: fixed ones (a ``value``), ones
taken from the described row (``ref`` to a FIELD ID), and free ones (empty
``value``, often with MIN/MAX or OPTIONs). DataLink documents carry them for
their ``service_def`` links (SODA cutouts); DAL answers such as ObsCore
tables carry them to say where each row's DataLink document is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from lxml import etree

from .._exceptions import FormatError, ParameterError
from .._media import DATALINK_MIME, is_datalink_format, same_format
from ._xml import check_prolog

__all__ = [
    "DATALINK_LINKS",
    "DATALINK_MIME",
    "SODA_ASYNC",
    "SODA_SYNC",
    "InputParam",
    "ServiceDescriptor",
    "descriptors_in",
    "descriptors_of",
    "is_datalink_format",
    "same_format",
]

#: Standard ids of the services descriptors point at (compared case-insensitively).
SODA_SYNC = "ivo://ivoa.net/std/SODA#sync-1.0"
SODA_ASYNC = "ivo://ivoa.net/std/SODA#async-1.0"
DATALINK_LINKS = "ivo://ivoa.net/std/DataLink#links-1.0"


@dataclass(frozen=True)
class InputParam:
    """One input parameter of a service descriptor.

    ``value`` is the fixed value ('' if the caller chooses); ``ref`` the ID of
    the FIELD whose value in the described row fills it in. ``minimum`` and
    ``maximum`` are the VALUES limits as text (for arrays, space-separated).
    """

    name: str
    datatype: str = "char"
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    value: str = ""
    ref: str | None = None
    options: tuple[str, ...] = ()
    minimum: str | None = None
    maximum: str | None = None

    @property
    def fixed(self) -> bool:
        """A value the service set (or one taken from the row): always sent."""
        return bool(self.value) or self.ref is not None


@dataclass(frozen=True)
class ServiceDescriptor:
    """A service a document describes: where it is, what it is, what it takes."""

    access_url: str
    standard_id: str = ""
    id: str | None = None
    name: str | None = None
    description: str = ""
    resource_identifier: str | None = None
    params: tuple[InputParam, ...] = ()

    def _is(self, standard: str) -> bool:
        return self.standard_id.strip().lower() == standard.lower()

    @property
    def is_soda_sync(self) -> bool:
        return self._is(SODA_SYNC)

    @property
    def is_soda_async(self) -> bool:
        return self._is(SODA_ASYNC)

    @property
    def is_links(self) -> bool:
        return self._is(DATALINK_LINKS)

    def param(self, name: str) -> InputParam | None:
        """The input parameter ``name`` (case-insensitive), if offered."""
        wanted = name.upper()
        return next((p for p in self.params if p.name.upper() == wanted), None)

    def fixed_values(self, row: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
        """The parameters the service fixes: given values, and ``ref`` ones from ``row``.

        ``row`` maps FIELD IDs (and names) to values; a ``ref`` parameter with
        no value in it is a ParameterError (the link can't be made).
        """
        values: list[tuple[str, str]] = []
        for param in self.params:
            if param.ref is not None and (not param.value or row is not None):
                found = None if row is None else row.get(param.ref)
                if found is None or str(found).strip() == "":
                    if param.value:
                        values.append((param.name, param.value))
                        continue
                    raise ParameterError(
                        f"service parameter {param.name} takes its value from column "
                        f"{param.ref!r}, which the row doesn't have"
                    )
                values.append((param.name, str(found).strip()))
            elif param.value:
                values.append((param.name, param.value))
        return values

    def url(
        self, values: Iterable[tuple[str, str]] = (), row: Mapping[str, Any] | None = None
    ) -> str:
        """A GET URL: the fixed parameters, then ``values`` (which replace fixed ones)."""
        extra = list(values)
        replaced = {name.upper() for name, _ in extra}
        params = [(n, v) for n, v in self.fixed_values(row) if n.upper() not in replaced]
        params.extend(extra)
        if not params:
            return self.access_url
        query = urlencode(params, safe="/:", quote_via=quote)
        joiner = "&" if urlsplit(self.access_url).query else "?"
        if self.access_url.endswith(("?", "&")):
            joiner = ""
        return f"{self.access_url}{joiner}{query}"


# Descriptors are read from the document's text, not astropy's objects: DALI
# values are text ("" means "the caller chooses"), which astropy would turn
# into zeros for numeric arrays.
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=False
)


def _local(element: Any) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element: Any, name: str) -> list[Any]:
    return [child for child in element if _local(child) == name]


def _input_param(element: Any) -> InputParam:
    options: list[str] = []
    minimum = maximum = None
    for values in _children(element, "VALUES"):
        options.extend(o.get("value", "") for o in values.iter() if _local(o) == "OPTION")
        for limit in _children(values, "MIN"):
            minimum = limit.get("value")
        for limit in _children(values, "MAX"):
            maximum = limit.get("value")
    return InputParam(
        name=element.get("name") or element.get("ID") or "",
        datatype=element.get("datatype") or "char",
        arraysize=element.get("arraysize"),
        xtype=element.get("xtype"),
        unit=element.get("unit"),
        ucd=element.get("ucd"),
        value=(element.get("value") or "").strip(),
        ref=element.get("ref") or None,
        options=tuple(options),
        minimum=minimum,
        maximum=maximum,
    )


def descriptors_of(data: bytes, *, url: str | None = None) -> tuple[ServiceDescriptor, ...]:
    """Every ``adhoc:service`` RESOURCE of a VOTable document, in document order.

    Cheap for documents without one (a byte search comes first), so every DAL
    answer can be asked.
    """
    if b"adhoc:service" not in data:
        return ()
    check_prolog(data, url, what="VOTable")  # an external DTD only, never loaded
    try:
        root = etree.fromstring(data, _PARSER)
    except (etree.LxmlError, ValueError) as exc:
        raise FormatError(f"malformed VOTable: {exc}", url=url) from exc
    return descriptors_in(root)


def descriptors_in(root: Any) -> tuple[ServiceDescriptor, ...]:
    """Every ``adhoc:service`` RESOURCE under an lxml element already parsed, in order."""
    found: list[ServiceDescriptor] = []
    for resource in root.iter():
        if _local(resource) != "RESOURCE" or (resource.get("utype") or "").lower() != (
            "adhoc:service"
        ):
            continue
        fixed = {
            (param.get("name") or "").lower(): (param.get("value") or "").strip()
            for param in _children(resource, "PARAM")
        }
        inputs = [
            _input_param(param)
            for group in _children(resource, "GROUP")
            if (group.get("name") or "").lower() == "inputparams"
            for param in _children(group, "PARAM")
        ]
        descriptions = _children(resource, "DESCRIPTION")
        found.append(
            ServiceDescriptor(
                access_url=fixed.get("accessurl", ""),
                standard_id=fixed.get("standardid", ""),
                id=resource.get("ID"),
                name=resource.get("name"),
                description=" ".join((descriptions[0].text or "").split()) if descriptions else "",
                resource_identifier=fixed.get("resourceidentifier") or None,
                params=tuple(inputs),
            )
        )
    return tuple(found)
