"""The registry side of a global discovery, without I/O: the RegTAP queries
for the candidate services, their coverages and their relationships, and what
is read from the answers. Read through :mod:`voharvest.protocol.discovery`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._discovery_plan import Candidate
from ._encoding import adql_string
from ._services import Resource
from .regtap import (
    RegistryFeatures,
    interfaces_aggregate,
    spectral_condition,
    temporal_condition,
)

__all__ = [
    "OBSCORE_MODEL_PATTERN",
    "OBSCORE_TABLE_PATTERN",
    "SIA1_ID",
    "SIA2_PATTERN",
    "TAP_IDS",
    "candidates_from_resources",
    "candidates_query",
    "coverage_queries",
    "parse_coverages",
    "parse_served_by",
    "served_by_queries",
]

SIA1_ID = "ivo://ivoa.net/std/sia"
SIA2_PATTERN = "ivo://ivoa.net/std/sia#query-2.%"
TAP_IDS = ("ivo://ivoa.net/std/tap", "ivo://ivoa.net/std/tap#aux")
OBSCORE_TABLE_PATTERN = "ivo://ivoa.net/std/obscore#table-1.%"
OBSCORE_MODEL_PATTERN = "ivo://ivoa.net/std/obscore%"

_CHUNK = 200


# --- registry queries ---------------------------------------------------------------


def _interfaces_column() -> str:
    return interfaces_aggregate()


def candidates_query(
    *,
    spectral: Any = None,
    temporal: Any = None,
    inclusive: bool = False,
    features: RegistryFeatures | None = None,
) -> str:
    """The one registry query for every candidate service (see the module text).

    ``spectral`` and ``temporal`` are as :func:`.regtap.build_query` takes
    them; with ``inclusive``, resources that declare no such coverage pass too.
    """
    sia1 = adql_string(SIA1_ID)
    taps = ", ".join(adql_string(i) for i in TAP_IDS)
    obscore_table = (
        "ivoid IN (SELECT ivoid FROM rr.res_table WHERE table_utype LIKE "
        f"{adql_string(OBSCORE_TABLE_PATTERN)})"
    )
    obscore_model = (
        "ivoid IN (SELECT ivoid FROM rr.res_detail WHERE "
        "detail_xpath = '/capability/dataModel/@ivo-id' AND "
        f"1 = ivo_nocasematch(detail_value, {adql_string(OBSCORE_MODEL_PATTERN)}))"
    )
    conditions = [
        f"(standard_id IN ({sia1})"
        f" OR standard_id LIKE {adql_string(SIA2_PATTERN)}"
        f" OR (standard_id IN ({taps}) AND ({obscore_table} OR {obscore_model})))"
    ]
    for value, build, table in (
        (spectral, spectral_condition, "rr.stc_spectral"),
        (temporal, temporal_condition, "rr.stc_temporal"),
    ):
        if value is None:
            continue
        condition = build(value, features or RegistryFeatures())
        if inclusive:
            condition = f"({condition} OR ivoid NOT IN (SELECT ivoid FROM {table}))"
        conditions.append(condition)
    columns = "ivoid, res_type, res_title, short_name"
    return "\n".join(
        [
            f"SELECT {columns},",
            f"  {_interfaces_column()}",
            "FROM rr.resource",
            "NATURAL JOIN rr.capability",
            "NATURAL JOIN rr.interface",
            "WHERE " + "\n  AND ".join(conditions),
            f"GROUP BY {columns}",
            "ORDER BY ivoid",
        ]
    )


def _in_list(ivoids: Sequence[str]) -> str:
    return ", ".join(adql_string(i, "ivoid") for i in ivoids)


def _chunks(ivoids: Iterable[str], size: int) -> list[list[str]]:
    unique = sorted(set(ivoids))
    return [unique[i : i + size] for i in range(0, len(unique), size)]


def coverage_queries(ivoids: Iterable[str], *, chunk: int = _CHUNK) -> list[str]:
    """The coverage MOC queries for these resources, ``chunk`` ivoids per query."""
    return [
        f"SELECT ivoid, coverage FROM rr.stc_spatial WHERE ivoid IN ({_in_list(part)})"
        for part in _chunks(ivoids, chunk)
    ]


def served_by_queries(ivoids: Iterable[str], *, chunk: int = _CHUNK) -> list[str]:
    """The IsServedBy queries for these resources, ``chunk`` ivoids per query."""
    return [
        "SELECT ivoid, related_id FROM rr.relationship "
        f"WHERE relationship_type = 'isservedby' AND ivoid IN ({_in_list(part)})"
        for part in _chunks(ivoids, chunk)
    ]


def candidates_from_resources(resources: Iterable[Resource]) -> list[Candidate]:
    """The candidate services of the resources :func:`candidates_query` found.

    One per resource and kind (the resource's best interface of that kind).
    """
    found: list[Candidate] = []
    for resource in resources:
        ivoid = resource.ivoid.strip().lower()
        for kind, interface_kind in (("obscore", "tap"), ("sia2", "sia2"), ("sia", "sia")):
            if interface_kind not in resource.service_kinds:
                continue
            interface = resource.interface(interface_kind)
            if kind != "obscore" and interface.is_auxiliary:
                continue
            found.append(
                Candidate(
                    ivoid=ivoid,
                    kind=kind,
                    access_url=interface.access_url,
                    title=resource.title,
                    res_type=resource.res_type.lower(),
                )
            )
    return found


def _text(row: Mapping[str, Any], name: str) -> str:
    for key, value in row.items():
        if key.lower() == name:
            return "" if value is None else str(value).strip()
    return ""


def parse_coverages(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """ivoid -> ASCII MOC from ``rr.stc_spatial`` rows (several rows of one
    resource are joined; an empty coverage is left out: none declared)."""
    found: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        ivoid, moc = _text(row, "ivoid").lower(), _text(row, "coverage")
        if ivoid and moc:
            found[ivoid].append(moc)
    return {ivoid: " ".join(mocs) for ivoid, mocs in found.items()}


def parse_served_by(rows: Iterable[Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """ivoid -> the ivoids that serve it, from ``rr.relationship`` rows."""
    found: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        ivoid, related = _text(row, "ivoid").lower(), _text(row, "related_id").lower()
        if ivoid and related:
            found[ivoid].add(related)
    return {ivoid: frozenset(related) for ivoid, related in found.items()}
