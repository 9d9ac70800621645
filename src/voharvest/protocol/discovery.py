"""Global image discovery, planned without I/O: which service to ask about which target.

The questions a discovery sends, and what it makes of the answers:

1. **Candidates** (:func:`candidates_query`, one registry query): every resource
   with an SIA 1.0 capability, an SIA 2.0 capability
   (``ivo://ivoa.net/std/sia#query-2.%``) or a TAP capability (main or
   auxiliary) on a resource that has an ObsCore table
   (``rr.res_table.table_utype LIKE 'ivo://ivoa.net/std/obscore#table-1.%'``)
   or declares the ObsCore data model (``rr.res_detail``, the older pattern
   pyvo also follows). Spectral and temporal constraints, the same for every
   target, are part of this query; the spatial one is not.
2. **Coverage** (:func:`coverage_queries`): each candidate's MOC, once
   (``SELECT ivoid, coverage FROM rr.stc_spatial WHERE ivoid IN (...)``).
   Every target is then tested locally (:class:`Coverage`, on mocpy): a
   (service, target) pair outside the coverage is never requested.
3. **Relationships** (:func:`served_by_queries`): ``isservedby`` rows among
   the candidates (``SELECT ivoid, related_id FROM rr.relationship WHERE
   relationship_type='isservedby' AND ivoid IN (...)``).
4. **Plan** (:func:`plan`): per target, the covering candidates, less those
   elided as pyvo.discover elides them (:func:`elide`): a resource's SIA 1.0
   when it also has SIA 2.0 or ObsCore, its SIA 2.0 when it has ObsCore, and
   any service served by another candidate. Targets that share a service are
   grouped, so that the requests can be batched: ObsCore with an upload of the
   targets (:func:`obscore_upload_query`), SIA 2.0 with several ``POS``
   (:func:`sia2_pos`).
5. **Datasets** (:class:`DatasetIndex`): the same access URL, or the same
   publisher DID, is one dataset, however many services and targets led to it.

The query shapes are part of the interface: VOFarm answers exactly them.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ParameterError
from ._encoding import adql_string, format_number
from ._services import Resource
from .coverage import CONE_MODES, INTERSECT_MODES, Cones, Coverage, inside, max_cell_radius
from .regtap import (
    RegistryFeatures,
    interfaces_aggregate,
    spectral_condition,
    temporal_condition,
)

__all__ = [
    "CONE_MODES",
    "INTERSECT_MODES",
    "KINDS",
    "OBSCORE_MODEL_PATTERN",
    "OBSCORE_TABLE_PATTERN",
    "SIA1_ID",
    "SIA2_PATTERN",
    "Candidate",
    "Coverage",
    "Dataset",
    "DatasetIndex",
    "Elision",
    "Origin",
    "Plan",
    "Target",
    "assign_targets",
    "candidates_from_resources",
    "candidates_query",
    "coverage_queries",
    "elide",
    "max_cell_radius",
    "multipart_body",
    "obscore_target_query",
    "obscore_upload_query",
    "parse_coverages",
    "parse_served_by",
    "plan",
    "served_by_queries",
    "sia2_pos",
    "targets_votable",
]

SIA1_ID = "ivo://ivoa.net/std/sia"
SIA2_PATTERN = "ivo://ivoa.net/std/sia#query-2.%"
TAP_IDS = ("ivo://ivoa.net/std/tap", "ivo://ivoa.net/std/tap#aux")
OBSCORE_TABLE_PATTERN = "ivo://ivoa.net/std/obscore#table-1.%"
OBSCORE_MODEL_PATTERN = "ivo://ivoa.net/std/obscore%"
#: The ObsCore table every ObsCore service has (ObsCore 1.1, section 4).
OBSCORE_TABLE = "ivoa.obscore"
#: The column of an upload answer that holds the target's id.
TARGET_COLUMN = "vh_target"

#: Service kinds, most capable first: a resource offering several is asked
#: through the first (pyvo.discover's order of preference).
KINDS = ("obscore", "sia2", "sia")
_KIND_NAMES = {"obscore": "ObsCore", "sia2": "SIA 2.0", "sia": "SIA 1.0"}


_CHUNK = 200


# --- values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A search circle: ``id`` (its place in the input), ICRS degrees."""

    id: int
    ra: float
    dec: float
    radius: float
    label: str = ""

    def __post_init__(self) -> None:
        for name in ("ra", "dec", "radius"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ParameterError(f"target {self.id}: {name} must be a finite number")
        if not 0 <= self.ra < 360 + 1e-9:
            raise ParameterError(f"target {self.id}: RA {self.ra} is outside [0, 360)")
        if not -90 <= self.dec <= 90:
            raise ParameterError(f"target {self.id}: Dec {self.dec} is outside [-90, 90]")
        if not 0 < self.radius <= 10:
            raise ParameterError(f"target {self.id}: radius {self.radius} is outside (0, 10] deg")


@dataclass(frozen=True)
class Candidate:
    """One service a discovery may ask: a resource's capability of one kind."""

    ivoid: str
    kind: str  # obscore, sia2 or sia
    access_url: str
    title: str = ""
    res_type: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.ivoid, self.kind)

    @property
    def label(self) -> str:
        return f"{_KIND_NAMES.get(self.kind, self.kind)} {self.ivoid}"


@dataclass(frozen=True)
class Elision:
    """Why a candidate is not asked about a target: ``reason`` is ``preference``
    (the same resource offers a more capable kind, ``by`` that kind's key),
    ``served-by`` (an IsServedBy relationship to ``by``, another candidate) or
    ``same-service`` (another ObsCore resource, ``by``, points at the same TAP
    service)."""

    reason: str
    by: tuple[str, str]

    def __str__(self) -> str:
        ivoid, kind = self.by
        if self.reason == "preference":
            return f"the resource is asked through {_KIND_NAMES.get(kind, kind)}"
        if self.reason == "served-by":
            return f"it is served by {ivoid}"
        return f"{ivoid} queries the same TAP service"


@dataclass(frozen=True)
class Plan:
    """What to ask: for each service (by key) the targets to query, those
    outside its coverage, and those for which it is elided.

    ``query[key]`` lists target ids in input order; ``skipped[key]`` the
    targets outside the coverage (for ``inclusive=False``, also every target of
    a service without a declared coverage); ``elided[key]`` maps target ids to
    their :class:`Elision`.
    """

    candidates: Mapping[tuple[str, str], Candidate]
    query: Mapping[tuple[str, str], tuple[int, ...]]
    skipped: Mapping[tuple[str, str], tuple[int, ...]]
    elided: Mapping[tuple[str, str], Mapping[int, Elision]]
    no_coverage: frozenset[str] = frozenset()

    @property
    def pairs(self) -> int:
        """How many (service, target) pairs are to be asked."""
        return sum(len(ids) for ids in self.query.values())

    def services_for(self, target_id: int) -> list[tuple[str, str]]:
        return [key for key, ids in self.query.items() if target_id in ids]


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


# --- elision ----------------------------------------------------------------------


def elide(
    present: Iterable[tuple[str, str]],
    served_by: Mapping[str, frozenset[str]],
    duplicates: Mapping[tuple[str, str], tuple[str, str]] | None = None,
) -> dict[tuple[str, str], Elision]:
    """The services of ``present`` (keys of candidates that cover one target)
    that are not to be asked, and why.

    As pyvo.discover: first a resource's less capable kinds give way to its
    most capable one (ObsCore over SIA 2.0 over SIA 1.0); then every service
    whose resource is served (IsServedBy) by a resource among ``present`` is
    dropped, all at once (a service that serves another and is itself served
    goes too). ``duplicates``: ObsCore services that query the same TAP
    service as another (key -> the one kept), dropped where that one is present.
    """
    keys = set(present)
    elided: dict[tuple[str, str], Elision] = {}
    by_ivoid: dict[str, set[str]] = defaultdict(set)
    for ivoid, kind in keys:
        by_ivoid[ivoid].add(kind)
    for ivoid, kinds in by_ivoid.items():
        best = next(kind for kind in KINDS if kind in kinds)
        for kind in kinds:
            if kind != best:
                elided[(ivoid, kind)] = Elision("preference", (ivoid, best))
    ivoids = set(by_ivoid)
    for ivoid, kinds in by_ivoid.items():
        servers = sorted(served_by.get(ivoid, frozenset()) & ivoids)
        if not servers:
            continue
        server = servers[0]
        server_kind = next(kind for kind in KINDS if kind in by_ivoid[server])
        for kind in kinds:
            elided.setdefault((ivoid, kind), Elision("served-by", (server, server_kind)))
    for key, kept in (duplicates or {}).items():
        if key in keys and kept in keys and key not in elided:
            elided[key] = Elision("same-service", kept)
    return elided


def _duplicate_obscore(candidates: Iterable[Candidate]) -> dict[tuple[str, str], tuple[str, str]]:
    """ObsCore candidates whose TAP service another one queries already: the
    one kept is a ``vs:catalogresource`` (the table's own record) if there is
    one, else the first by ivoid."""
    by_url: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        if candidate.kind == "obscore":
            by_url[candidate.access_url.rstrip("/?").lower()].append(candidate)
    duplicates: dict[tuple[str, str], tuple[str, str]] = {}
    for group in by_url.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda c: (c.res_type != "vs:catalogresource", c.ivoid))
        for other in group[1:]:
            duplicates[other.key] = group[0].key
    return duplicates


# --- the plan -------------------------------------------------------------------------


def plan(
    targets: Sequence[Target],
    candidates: Iterable[Candidate],
    coverages: Mapping[str, str],
    served_by: Mapping[str, frozenset[str]],
    *,
    inclusive: bool = False,
    order: int = 6,
    intersect: str = "covers",
    cone: str = "inclusive",
) -> Plan:
    """Which candidate to ask about which target.

    ``coverages``: ivoid -> ASCII MOC (:func:`parse_coverages`); a candidate
    without one is asked about every target with ``inclusive``, about none
    without. ``served_by``: :func:`parse_served_by`. ``order``, ``intersect``
    and ``cone`` (:data:`CONE_MODES`) say how a target meets a coverage.
    """
    if intersect not in INTERSECT_MODES:
        raise ParameterError(f"intersect must be one of {INTERSECT_MODES}, not {intersect!r}")
    if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= 29:
        raise ParameterError(f"order must be an integer in 0..29, not {order!r}")
    if cone not in CONE_MODES:
        raise ParameterError(f"cone must be one of {CONE_MODES}, not {cone!r}")
    by_key = {c.key: c for c in candidates}
    footprints: dict[str, Coverage] = {}
    for ivoid in sorted({c.ivoid for c in by_key.values()}):
        if ivoid in coverages:
            footprints[ivoid] = Coverage.from_ascii(coverages[ivoid])
    cones = Cones(targets, order, cone)
    held: dict[str, list[bool]] = {
        ivoid: inside(footprint, cones, intersect) for ivoid, footprint in footprints.items()
    }
    everywhere = [True] * len(targets)
    nowhere = [False] * len(targets)
    no_coverage = frozenset(c.ivoid for c in by_key.values() if c.ivoid not in footprints)
    duplicates = _duplicate_obscore(by_key.values())

    query: dict[tuple[str, str], list[int]] = {key: [] for key in by_key}
    skipped: dict[tuple[str, str], list[int]] = {key: [] for key in by_key}
    elided: dict[tuple[str, str], dict[int, Elision]] = {key: {} for key in by_key}
    memo: dict[frozenset[tuple[str, str]], dict[tuple[str, str], Elision]] = {}
    for index, target in enumerate(targets):
        present = []
        for key, candidate in by_key.items():
            covered = held.get(candidate.ivoid)
            if covered is None:
                covered = everywhere if inclusive else nowhere
            if covered[index]:
                present.append(key)
            else:
                skipped[key].append(target.id)
        group = frozenset(present)
        decided = memo.get(group)
        if decided is None:
            decided = memo[group] = elide(group, served_by, duplicates)
        for key in present:
            reason = decided.get(key)
            if reason is None:
                query[key].append(target.id)
            else:
                elided[key][target.id] = reason
    return Plan(
        candidates=by_key,
        query={k: tuple(v) for k, v in query.items()},
        skipped={k: tuple(v) for k, v in skipped.items()},
        elided=elided,
        no_coverage=no_coverage,
    )


# --- requests ---------------------------------------------------------------------------


def _mjd(value: Any) -> float:
    from ._encoding import is_time, to_float

    if is_time(value):
        return float(value.utc.mjd)
    return to_float(value, "time (MJD)")


def _constraints(band: Any, time: Any, prefix: str) -> list[str]:
    """ObsCore conditions for a wavelength (metres) and a time (MJD or interval)."""
    terms = []
    if band is not None:
        metres = wavelength_metres(band)
        terms.append(
            f"({prefix}em_min <= {format_number(metres)} AND {prefix}em_max >= "
            f"{format_number(metres)})"
        )
    if time is not None:
        lo, hi = time_interval(time)
        terms.append(
            f"({prefix}t_min <= {format_number(hi)} AND {prefix}t_max >= {format_number(lo)})"
        )
    return terms


def wavelength_metres(band: Any) -> float:
    """A spectral point (a Quantity of any spectral unit, or metres) in metres."""
    from ._encoding import is_quantity, to_float

    if is_quantity(band):
        from astropy import units as u

        try:
            return float(band.to_value(u.m, equivalencies=u.spectral()))
        except u.UnitConversionError as exc:
            raise ParameterError(f"band: {band!r} is not a spectral quantity") from exc
    return to_float(band, "band (metres)")


def time_interval(time: Any) -> tuple[float, float]:
    """(start, end) MJD of a time or a (start, end) pair."""
    if isinstance(time, tuple | list):
        if len(time) != 2:
            raise ParameterError(f"time: expected a time or a (start, end) pair, got {time!r}")
        lo, hi = _mjd(time[0]), _mjd(time[1])
    else:
        lo = hi = _mjd(time)
    return (lo, hi) if lo <= hi else (hi, lo)


def obscore_upload_query(*, band: Any = None, time: Any = None, table: str = OBSCORE_TABLE) -> str:
    """ObsCore images meeting the uploaded targets (``TAP_UPLOAD.targets``: id,
    ra, dec, radius), each row with its target's id in ``vh_target``."""
    where = ["o.dataproduct_type = 'image'", *_constraints(band, time, "o.")]
    return (
        f"SELECT t.id AS {TARGET_COLUMN}, o.* FROM {table} AS o "
        "JOIN TAP_UPLOAD.targets AS t ON "
        "(1 = CONTAINS(POINT('ICRS', o.s_ra, o.s_dec), CIRCLE('ICRS', t.ra, t.dec, t.radius)) "
        "OR 1 = INTERSECTS(CIRCLE('ICRS', t.ra, t.dec, t.radius), o.s_region)) "
        "WHERE " + " AND ".join(where)
    )


def obscore_target_query(
    target: Target, *, band: Any = None, time: Any = None, table: str = OBSCORE_TABLE
) -> str:
    """ObsCore images meeting one target (for services that refuse uploads)."""
    ra, dec, r = (format_number(v) for v in (target.ra, target.dec, target.radius))
    circle = f"CIRCLE('ICRS', {ra}, {dec}, {r})"
    where = [
        "dataproduct_type = 'image'",
        f"(1 = CONTAINS(POINT('ICRS', s_ra, s_dec), {circle})"
        f" OR 1 = INTERSECTS({circle}, s_region))",
        *_constraints(band, time, ""),
    ]
    return f"SELECT * FROM {table} WHERE " + " AND ".join(where)


def targets_votable(targets: Sequence[Target]) -> bytes:
    """The upload table of :func:`obscore_upload_query`: id, ra, dec, radius."""
    rows = "".join(
        f"<TR><TD>{t.id}</TD><TD>{t.ra!r}</TD><TD>{t.dec!r}</TD><TD>{t.radius!r}</TD></TR>"
        for t in targets
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        '<RESOURCE type="results"><TABLE name="targets">'
        '<FIELD name="id" datatype="long"/>'
        '<FIELD name="ra" datatype="double" unit="deg" ucd="pos.eq.ra"/>'
        '<FIELD name="dec" datatype="double" unit="deg" ucd="pos.eq.dec"/>'
        '<FIELD name="radius" datatype="double" unit="deg"/>'
        f"<DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n"
    ).encode()


def multipart_body(
    fields: Sequence[tuple[str, str]], files: Mapping[str, bytes]
) -> tuple[str, bytes]:
    """(Content-Type, body) of a ``multipart/form-data`` POST: the form fields,
    then each file (a TAP upload: ``UPLOAD=name,param:name`` names it)."""
    boundary = f"voharvest-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, content in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}.xml"\r\nContent-Type: application/x-votable+xml\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def sia2_pos(targets: Sequence[Target]) -> list[tuple[float, float, float]]:
    """The ``POS`` circles of an SIA 2.0 request for these targets (ORed by the service)."""
    return [(t.ra, t.dec, t.radius) for t in targets]


def _separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular distance in degrees (haversine)."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dp, dl = p2 - p1, math.radians(ra2 - ra1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def assign_targets(
    ra: float | None, dec: float | None, fov: float | None, targets: Sequence[Target]
) -> list[int]:
    """The targets of a multi-POS request an image answered for.

    An image (centre, field of view in degrees) belongs to each target whose
    circle meets the image's bounding circle; the service said it meets at
    least one, so an image that meets none by this test (no position, say)
    belongs to the nearest target, or to the first without a position.
    """
    if len(targets) == 1:
        return [targets[0].id]
    if ra is None or dec is None or not (math.isfinite(ra) and math.isfinite(dec)):
        return [targets[0].id]
    half = fov / 2 if fov is not None and math.isfinite(fov) and fov > 0 else 0.0
    distances = [(_separation(ra, dec, t.ra, t.dec), t) for t in targets]
    found = [t.id for d, t in distances if d <= t.radius + half + 1e-9]
    if found:
        return found
    return [min(distances, key=lambda item: item[0])[1].id]


# --- datasets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a dataset was found: a service (ivoid, kind) asked about a target."""

    ivoid: str
    kind: str
    target: int


@dataclass
class Dataset:
    """One dataset, however many services and targets led to it.

    ``access_url``: the first URL seen (``access_urls``: all of them, when the
    same publisher DID came under several); ``record``: the first record (an
    :class:`~voharvest.protocol.records.ImageRecord`), ``origins`` every
    (service, target) that found it.
    """

    access_url: str
    publisher_did: str | None
    record: Any
    access_urls: list[str] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)

    @property
    def targets(self) -> list[int]:
        return sorted({o.target for o in self.origins})

    @property
    def services(self) -> list[tuple[str, str]]:
        return sorted({(o.ivoid, o.kind) for o in self.origins})

    def getdataurl(self) -> str:
        return self.access_url

    @property
    def format(self) -> str | None:
        return getattr(self.record, "format", None)

    @property
    def title(self) -> str | None:
        return getattr(self.record, "title", None)


class DatasetIndex:
    """Datasets by access URL and by publisher DID, in the order first found."""

    def __init__(self) -> None:
        self.datasets: list[Dataset] = []
        self._by_url: dict[str, Dataset] = {}
        self._by_did: dict[str, Dataset] = {}

    def __len__(self) -> int:
        return len(self.datasets)

    def add(self, record: Any, origin: Origin) -> bool:
        """Add a record found by ``origin``; True if it is a new dataset."""
        url = record.getdataurl()
        if not url:
            return False
        did = getattr(record, "publisher_did", None) or None
        dataset = self._by_url.get(url)
        if dataset is None and did is not None:
            dataset = self._by_did.get(did)
        new = dataset is None
        if dataset is None:
            dataset = Dataset(access_url=url, publisher_did=did, record=record)
            self.datasets.append(dataset)
        if url not in self._by_url:
            self._by_url[url] = dataset
            dataset.access_urls.append(url)
        if did is not None:
            self._by_did.setdefault(did, dataset)
            if dataset.publisher_did is None:
                dataset.publisher_did = did
        if origin not in dataset.origins:
            dataset.origins.append(origin)
        return new
