"""The values of a global discovery: how it plans and batches (:class:`DiscoveryOptions`),
what it did with each service (:class:`ServiceReport`) and what it found
(:class:`DiscoveryResult`).

Plain frozen data: :mod:`voharvest._discovery` runs a discovery with them,
:mod:`voharvest._discovery_search` fills the reports.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ._exceptions import ParameterError
from .protocol import discovery as plan_
from .protocol.discovery import Plan, Target

if TYPE_CHECKING:
    from .protocol.discovery import Dataset

__all__ = ["DiscoveryOptions", "DiscoveryResult", "ServiceReport"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiscoveryOptions:
    """How a discovery plans and batches.

    ``order``/``intersect``/``cone``: the coverage test
    (:func:`voharvest.protocol.discovery.plan`); ``batch_upload``: targets per
    ObsCore upload query; ``batch_pos``: circles per SIA 2.0 request;
    ``concurrency``: requests in flight at once per host and per service (each
    host's own limits apply too); ``chunk``: ivoids per coverage or
    relationship query.
    """

    order: int = 6
    intersect: str = "covers"
    cone: str = "inclusive"
    batch_upload: int = 500
    batch_pos: int = 20
    concurrency: int = 8
    chunk: int = 200

    def __post_init__(self) -> None:
        for name in ("batch_upload", "batch_pos", "concurrency", "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"DiscoveryOptions.{name}: expected a positive integer")
        if self.cone not in plan_.CONE_MODES:
            raise ParameterError(
                f"DiscoveryOptions.cone: one of {plan_.CONE_MODES}, not {self.cone!r}"
            )
        if self.intersect not in plan_.INTERSECT_MODES:
            raise ParameterError(
                f"DiscoveryOptions.intersect: one of {plan_.INTERSECT_MODES}, "
                f"not {self.intersect!r}"
            )


@dataclasses.dataclass(frozen=True)
class ServiceReport:
    """What a discovery did with one service (its provenance).

    ``status``: ``queried`` (asked, at least one answer), ``failed`` (asked,
    no answer), ``elided`` (never asked: another service covers it for every
    target that its coverage holds), ``skipped`` (no target in its coverage).
    Counts are in targets; ``requests`` is what was sent to it (``replayed``:
    answers read from the journal instead), ``records`` the rows it answered,
    ``new`` the datasets first found there.
    ``elided_by`` names the reasons (text), ``errors`` the failures,
    ``mode``: ``upload``, ``multi-pos`` or ``single`` (how it was asked).
    """

    ivoid: str
    kind: str
    access_url: str
    title: str
    status: str
    queried: int = 0
    skipped: int = 0
    elided: int = 0
    failed: int = 0
    requests: int = 0
    replayed: int = 0
    records: int = 0
    new: int = 0
    overflows: int = 0
    mode: str = ""
    elided_by: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.ivoid, self.kind)


@dataclasses.dataclass(frozen=True)
class DiscoveryResult:
    """Datasets found (each with every origin), a report per service, the plan."""

    targets: tuple[Target, ...]
    datasets: tuple[Dataset, ...]
    services: tuple[ServiceReport, ...]
    plan: Plan
    registry_requests: int
    #: Answers read from the journal instead of asked for (registry and searches).
    replayed: int = 0

    @property
    def requests(self) -> int:
        """Every request sent: the registry's and the services'."""
        return self.registry_requests + sum(s.requests for s in self.services)

    def service(self, ivoid: str, kind: str | None = None) -> ServiceReport:
        for report in self.services:
            if report.ivoid == ivoid.lower() and (kind is None or report.kind == kind):
                return report
        raise KeyError(f"no service {ivoid} ({kind or 'any kind'}) among the candidates")

    def for_target(self, target_id: int) -> list[Dataset]:
        return [d for d in self.datasets if target_id in d.targets]

    def by_status(self, status: str) -> list[tuple[str, str]]:
        return sorted(s.key for s in self.services if s.status == status)

    def report(self) -> dict[str, Any]:
        """The provenance as plain data (JSON-ready): a record per service, totals."""
        return {
            "targets": len(self.targets),
            "datasets": len(self.datasets),
            "requests": self.requests,
            "registry_requests": self.registry_requests,
            "replayed": self.replayed,
            "services": [
                {**dataclasses.asdict(s), "elided_by": list(s.elided_by), "errors": list(s.errors)}
                for s in self.services
            ],
        }
