"""The RegTAP registry of a :class:`~voharvest.testing.FarmVO`: resources, coverage, relationships.

Like the farm's plain registry, this is a recogniser, not an ADQL engine. It
answers a query on one of three tables, told apart by the outer ``FROM``:

- ``rr.stc_spatial``: one row per resource with ``ivoid`` and ``coverage``, the
  resource's coverage as an ASCII MOC (a ``char`` field with ``xtype="moc"``).
- ``rr.relationship``: one row per ``isservedby`` relationship (``ivoid``,
  ``related_id``, ``relationship_type``, ``related_name``).
- otherwise, resources (``rr.resource``, ``rr.capability``, ``rr.interface``,
  ``rr.res_table``): one row per resource when the query aggregates the
  interfaces (voharvest's ``interfaces``, pyvo's ``access_urls``, ...), else one
  row per (resource, interface) with the plain columns it selects (``ivoid``,
  ``access_url``, ``standard_id``, ``table_name``, ...).

Every answer has the columns the query selects, in its order.

Constraints recognised, all AND-ed: ``standard_id`` ``=``/``IN``/``LIKE``
(which interfaces; none named: all), ``table_utype LIKE`` (resources with an
ObsCore table), ``rr.res_detail`` data-model constraints (no resource has
such rows: nothing), ``ivoid``/``related_id`` ``=``/``IN`` literal lists,
joins on ``TAP_UPLOAD.<table>`` (``ivoid=alias.id``: the values must be in
the uploaded column), ``relationship_type``, ``ivo_hashlist_has(waveband,
...)``, ``ivo_hasword``, ``TOP``, ``MAXREC``, and coverage against a MOC:
``CONTAINS(MOC(order, CIRCLE|POINT(...)), coverage)``, ``CONTAINS(coverage,
MOC(...))`` and ``INTERSECTS`` either way round, evaluated with mocpy.
Anything else is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._footprints import moc_of_disc
from ._registry import (
    DEFAULT_COLUMNS,
    answer_columns,
    answer_fields,
    registry_table,
    resource_values,
)
from ._vo import OBSCORE_UTYPE, STANDARD_IDS, FarmService
from ._votables import Field, error_votable

if TYPE_CHECKING:
    from ._farm import FarmHost, VOFarm

__all__ = ["MocField", "vo_registry_answer"]

_VERSIONS = {"sia1": "1.0", "sia2": "2.0", "obscore": "1.1"}
_LITERAL = r"'((?:[^']|'')*)'"
_LIST = r"\(\s*('(?:[^']|'')*'(?:\s*,\s*'(?:[^']|'')*')*)\s*\)"
_WAVEBAND = r"ivo_hashlist_has\s*\(\s*waveband\s*,\s*" + _LITERAL
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


@dataclass(frozen=True)
class MocField(Field):
    """A VOTable FIELD with an ``xtype`` (``moc`` for coverage)."""

    xtype: str | None = None

    def xml(self) -> str:
        text = super().xml()
        if self.xtype is None:
            return text
        return text[: -len("/>")] + f' xtype="{self.xtype}"/>'


# --- reading the query -------------------------------------------------------------------


def _literals(pattern: str, text: str) -> list[str]:
    return [m.group(1).replace("''", "'") for m in re.finditer(pattern, text, re.IGNORECASE)]


def _listed(column: str, text: str) -> set[str] | None:
    """Values ``column`` must take (``= 'x'`` or ``IN ('x', ...)``), None if unconstrained."""
    name = r"(?<![\w.])(?:\w+\.)?" + column
    values = _literals(name + r"\s*=\s*" + _LITERAL, text)
    for match in re.finditer(name + r"\s+IN\s*" + _LIST, text, re.IGNORECASE):
        values += _literals(_LITERAL, match.group(1))
    return {v.lower() for v in values} if values else None


def _like(pattern: str) -> re.Pattern[str]:
    parts = (re.escape(piece) for piece in pattern.lower().split("%"))
    return re.compile(".*".join(part.replace("_", ".") for part in parts) + r"\Z", re.DOTALL)


def _outer_from(query: str) -> str:
    """The first table of the outermost FROM, lower case."""
    match = re.search(r"\bFROM\s+([\w.\"]+)", query, re.IGNORECASE)
    return match.group(1).strip('"').lower() if match else ""


def _upload_joins(query: str) -> list[tuple[str, str, str]]:
    """(our column, upload table, upload column) of each ``JOIN tap_upload.T AS a ON (x = a.y)``."""
    joins = []
    pattern = (
        r"JOIN\s+tap_upload\.(\w+)(?:\s+AS)?\s+(\w+)\s+ON\s*\(?\s*([\w.]+)\s*=\s*([\w.]+)\s*\)?"
    )
    for match in re.finditer(pattern, query, re.IGNORECASE):
        table, alias, left, right = (g.lower() for g in match.groups())
        ours, theirs = (left, right) if right.startswith(alias + ".") else (right, left)
        joins.append((ours.rsplit(".", 1)[-1], table, theirs.rsplit(".", 1)[-1]))
    return joins


# --- coverage constraints --------------------------------------------------------------------

_MOC_ARG = (
    r"MOC\s*\(\s*(\d+)\s*,\s*(CIRCLE|POINT)\s*\(\s*(?:'[^']*'\s*,\s*)?"
    + _NUMBER
    + r"\s*,\s*"
    + _NUMBER
    + r"(?:\s*,\s*"
    + _NUMBER
    + r")?\s*\)\s*\)"
)


def _coverage_tests(query: str) -> list[Callable[[Any], bool]]:
    """A test per coverage constraint of the query: coverage MOC -> does it pass.

    ``MOC(order, CIRCLE(...))`` is made as pgsphere (behind DaCHS) makes it: the
    cells whose centre lies within the radius plus the largest cell radius of the
    order (:func:`~._footprints.moc_of_disc`), a few more than the circle touches.
    """
    tests: list[Callable[[Any], bool]] = []
    for function in ("CONTAINS", "INTERSECTS"):
        first = re.compile(function + r"\s*\(\s*" + _MOC_ARG + r"\s*,\s*coverage\s*\)", re.I)
        second = re.compile(function + r"\s*\(\s*coverage\s*,\s*" + _MOC_ARG + r"\s*\)", re.I)
        for pattern, moc_first in ((first, True), (second, False)):
            for match in pattern.finditer(query):
                order, _, ra, dec, radius = match.groups()
                region = moc_of_disc(float(ra), float(dec), float(radius or 0.0), int(order))
                tests.append(_coverage_test(function.upper(), region, moc_first))
    return tests


def _coverage_test(function: str, region: Any, region_first: bool) -> Callable[[Any], bool]:
    def test(coverage: Any) -> bool:
        if function == "INTERSECTS":
            return not coverage.intersection(region).empty()
        inner, outer = (region, coverage) if region_first else (coverage, region)
        # inner within outer: what they share is all of inner (mocpy 0.21's difference
        # answers an empty MOC for disjoint operands, so it is not used here).
        shared = inner.intersection(outer).to_depth29_ranges
        return bool(np.array_equal(shared, inner.to_depth29_ranges))

    return test


# --- rows -------------------------------------------------------------------------------------


def _interfaces(farm: VOFarm, service: FarmService) -> list[tuple[str, str, str, str]]:
    """(kind, standard id, version, access URL) of each of a resource's interfaces."""
    host = farm.hosts[service.host]
    urls = {"sia1": host.sia1_url, "sia2": host.sia2_url, "obscore": host.tap_url}
    return [(k, STANDARD_IDS[k], _VERSIONS[k], urls[k]) for k in service.kinds]


def _names_standards(query: str) -> bool:
    return re.search(r"\bstandard_id\s*(?:=|IN\b|I?LIKE\b)", query, re.IGNORECASE) is not None


def _has_obscore_table(query: str) -> bool:
    """Whether the query's ``table_utype LIKE`` patterns match an ObsCore table."""
    utypes = [_like(p) for p in _literals(r"\btable_utype\s+I?LIKE\s+" + _LITERAL, query)]
    return any(u.match(OBSCORE_UTYPE) for u in utypes)


def _wanted(interfaces: list[tuple[str, str, str, str]], query: str) -> list[Any]:
    """The interfaces a query's standard ids ask for (all when it names none).

    With standard ids, table constraints (``table_utype``, ``rr.res_detail``) are
    read as conditions on the TAP interfaces alone, as in one query OR-ing
    "an SIA interface" with "a TAP interface to an ObsCore table".
    """
    ids = _listed("standard_id", query) or set()
    likes = [_like(p) for p in _literals(r"\bstandard_id\s+I?LIKE\s+" + _LITERAL, query)]
    if not ids and not likes:
        return interfaces
    tables = "table_utype" in query.lower() or "rr.res_detail" in query.lower()
    return [
        i
        for i in interfaces
        if (i[1].lower() in ids or any(like.match(i[1]) for like in likes))
        and not (tables and i[0] == "obscore" and not _has_obscore_table(query))
    ]


def _description(service: FarmService, host: FarmHost) -> str:
    kinds = ", ".join(
        {"sia1": "SIA 1.0", "sia2": "SIA 2.0", "obscore": "ObsCore TAP"}[k] for k in service.kinds
    )
    return f"Simulated images of a synthetic sky from VOFarm site {host.index} ({kinds})."


def _resource_values(farm: VOFarm, service: FarmService) -> dict[str, object]:
    host = farm.hosts[service.host]
    site = farm.vo.sites[service.host] if farm.vo is not None else None
    return {
        "ivoid": service.ivoid,
        "res_type": service.res_type,
        "short_name": service.key.replace("/", "-")[:16],
        "res_title": service.title,
        "res_description": _description(service, host),
        "reference_url": host.base_url + "/",
        "creator_seq": "VOFarm",
        "waveband": site.waveband if site is not None else "optical",
    }


def _aggregated_values(farm: VOFarm, service: FarmService, wanted: list[Any]) -> dict[str, object]:
    """The resource's columns with its ``wanted`` interfaces aggregated (one row per resource)."""
    interfaces = [
        (std, "vs:paramhttp", "std", version, url, f"{service.title} ({kind})")
        for kind, std, version, url in wanted
    ]
    return resource_values(_resource_values(farm, service), interfaces)


def _flat_value(
    name: str, values: dict[str, object], interface: Any, service: FarmService
) -> object:
    kind, std, version, url = interface
    obscore = kind == "obscore"
    extra: dict[str, object] = {
        "access_url": url,
        "standard_id": std,
        "std_version": version,
        "intf_type": "vs:paramhttp",
        "intf_role": "std",
        "cap_type": "vs:capability",
        "cap_description": f"{service.title} ({kind})",
        "table_name": "ivoa.obscore" if obscore else None,
        "table_utype": OBSCORE_UTYPE if obscore else None,
        "table_type": "output" if obscore else None,
    }
    return {**resource_values(values, []), **extra}.get(name)


# --- the answer ---------------------------------------------------------------------------------


def _resource_passes(
    farm: VOFarm,
    service: FarmService,
    query: str,
    uploads: Mapping[str, Mapping[str, list[str]]],
) -> bool:
    vo = farm.vo
    assert vo is not None
    text = query.lower()
    ivoids = _listed("ivoid", query)
    if ivoids is not None and service.ivoid.lower() not in ivoids:
        return False
    for column, table, theirs in _upload_joins(query):
        if column == "ivoid" and service.ivoid.lower() not in _uploaded(uploads, table, theirs):
            return False
    if not _names_standards(query):  # table constraints on the resource (pyvo's Datamodel)
        if "table_utype" in text and not ("obscore" in service.kinds and _has_obscore_table(query)):
            return False
        if "rr.res_detail" in text and "table_utype" not in text:
            return False  # no resource declares data models in rr.res_detail
    bands = {b.strip().lower() for b in _literals(_WAVEBAND, query)}
    if bands and vo.sites[service.host].waveband.lower() not in bands:
        return False
    words = _literals(r"ivo_hasword\s*\(\s*res_\w+\s*,\s*" + _LITERAL, query)
    text_of = f"{service.title} {_description(service, farm.hosts[service.host])}"
    if any(not re.search(r"\b" + re.escape(w) + r"\b", text_of, re.I) for w in words):
        return False
    tests = _coverage_tests(query)
    return not tests or all(test(vo.sites[service.host].footprint.moc()) for test in tests)


def _uploaded(uploads: Mapping[str, Mapping[str, list[str]]], table: str, column: str) -> set[str]:
    return {str(v).lower() for v in uploads.get(table, {}).get(column, [])}


def _resources(
    farm: VOFarm, query: str, uploads: Mapping[str, Mapping[str, list[str]]]
) -> tuple[Sequence[Field], list[Any]]:
    vo = farm.vo
    assert vo is not None
    names = answer_columns(query)
    passing = [s for s in vo.services if _resource_passes(farm, s, query, uploads)]
    rows = []
    if {"interfaces", "access_urls"} & set(names) or names == list(DEFAULT_COLUMNS):
        for service in passing:
            wanted = _wanted(_interfaces(farm, service), query)
            if wanted:
                values = _aggregated_values(farm, service, wanted)
                rows.append([values.get(name) for name in names])
    else:
        for service in passing:
            values = _resource_values(farm, service)
            for interface in _wanted(_interfaces(farm, service), query):
                rows.append([_flat_value(n, values, interface, service) for n in names])
    return answer_fields(names), rows


def _coverage(
    farm: VOFarm, query: str, uploads: Mapping[str, Mapping[str, list[str]]]
) -> tuple[Sequence[Field], list[Any]]:
    vo = farm.vo
    assert vo is not None
    names = answer_columns(query, ["ivoid", "coverage"])
    fields = [
        MocField(n, xtype="moc", ucd="pos.outline;obs") if n == "coverage" else Field(n)
        for n in names
    ]
    ivoids = _listed("ivoid", query)
    joins = _upload_joins(query)
    tests = _coverage_tests(query)
    rows = []
    for service in vo.services:
        if ivoids is not None and service.ivoid.lower() not in ivoids:
            continue
        if any(
            c == "ivoid" and service.ivoid.lower() not in _uploaded(uploads, t, u)
            for c, t, u in joins
        ):
            continue
        footprint = vo.sites[service.host].footprint
        if tests and not all(test(footprint.moc()) for test in tests):
            continue
        values = {"ivoid": service.ivoid, "coverage": footprint.moc_text, "ref_frame": "ICRS"}
        rows.append([values.get(n) for n in names])
    return fields, rows


def _relationships(
    farm: VOFarm, query: str, uploads: Mapping[str, Mapping[str, list[str]]]
) -> tuple[Sequence[Field], list[Any]]:
    vo = farm.vo
    assert vo is not None
    names = answer_columns(query, ["ivoid", "relationship_type", "related_id", "related_name"])
    types = _listed("relationship_type", query)
    ivoids = _listed("ivoid", query)
    related = _listed("related_id", query)
    joins = _upload_joins(query)
    rows = []
    for ivoid, related_id in vo.relationships():
        values = {
            "ivoid": ivoid,
            "related_id": related_id,
            "relationship_type": "isservedby",
            "related_name": next(s.title for s in vo.services if s.ivoid == related_id),
        }
        if types is not None and "isservedby" not in types:
            continue
        if ivoids is not None and ivoid.lower() not in ivoids:
            continue
        if related is not None and related_id.lower() not in related:
            continue
        if any(str(values.get(c, "")).lower() not in _uploaded(uploads, t, u) for c, t, u in joins):
            continue
        rows.append([values.get(n) for n in names])
    return [Field(n) for n in names], rows


def vo_registry_answer(
    farm: VOFarm,
    params: Mapping[str, str],
    uploads: Mapping[str, Mapping[str, list[str]]] | None = None,
) -> tuple[int, bytes]:
    """(HTTP status, VOTable) for a RegTAP query on a farm with a :class:`FarmVO`.

    ``uploads``: uploaded tables by (lower-case) name, each column name to its values.
    """
    query = params.get("QUERY", "")
    if not query.strip():
        return 400, error_votable("QUERY is missing")
    uploads = uploads or {}
    table = _outer_from(query)
    if table == "rr.stc_spatial":
        fields, rows = _coverage(farm, query, uploads)
    elif table == "rr.relationship":
        fields, rows = _relationships(farm, query, uploads)
    else:
        fields, rows = _resources(farm, query, uploads)
    return registry_table(rows, query, params, fields=fields)
