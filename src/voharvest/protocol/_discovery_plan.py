"""The plan of a global discovery, made without I/O: which service to ask about which target.

The values every part of a discovery shares (:class:`Target`,
:class:`Candidate`, :class:`Elision`, :class:`Plan`), the elision of
services as pyvo.discover elides them (:func:`elide`), and the plan that
tests each target against each candidate's coverage (:func:`plan`). Read
through :mod:`voharvest.protocol.discovery`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .._exceptions import ParameterError
from .coverage import CONE_MODES, INTERSECT_MODES, Cones, Coverage, inside

__all__ = ["KINDS", "Candidate", "Elision", "Plan", "Target", "elide", "plan"]

#: Service kinds, most capable first: a resource offering several is asked
#: through the first (pyvo.discover's order of preference).
KINDS = ("obscore", "sia2", "sia")
_KIND_NAMES = {"obscore": "ObsCore", "sia2": "SIA 2.0", "sia": "SIA 1.0"}


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
