"""A VO for global discovery: sites with footprints, the services they publish, how they relate.

:class:`FarmVO` describes what a :class:`~voharvest.testing.VOFarm` given
``vo=`` serves instead of its uniform hosts: each data host is a *site*
(:class:`Site`) holding one collection of tiles inside its footprint, and
publishing it through one or more registry resources (:class:`FarmService`):
an SIA 1.0 service, an SIA 2.0 service, an ObsCore table behind the site's
TAP endpoint, or one resource with several of these capabilities. A resource
may be *served by* another (RegTAP ``rr.relationship``, ``isservedby``): the
same collection reached through a more capable service, as an SIA 2.0 service
served by the ObsCore TAP service of the same site.

:func:`discovery_vo` is the lineup of ``benchmarks/discover.py``: 20 services
on 17 sites, survey stripes and pointed-observation fields, mostly disjoint.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .._exceptions import ParameterError
from ._footprints import Cone, Footprint, Zone

__all__ = [
    "KINDS",
    "OBSCORE_UTYPE",
    "STANDARD_IDS",
    "FarmService",
    "FarmVO",
    "Site",
    "discovery_vo",
]

#: What a resource can offer: SIA 1.0, SIA 2.0, an ObsCore table over TAP.
KINDS = ("sia1", "sia2", "obscore")
#: The standard id each kind's interface declares in the registry.
STANDARD_IDS = {
    "sia1": "ivo://ivoa.net/std/sia",
    "sia2": "ivo://ivoa.net/std/sia#query-2.0",
    "obscore": "ivo://ivoa.net/std/tap#aux",
}
#: The utype of an ObsCore 1.1 table (rr.res_table.table_utype).
OBSCORE_UTYPE = "ivo://ivoa.net/std/obscore#table-1.1"


@dataclass(frozen=True)
class Site:
    """One data host: its collection's footprint, and what its services accept.

    ``uploads``: its TAP endpoint accepts table uploads (``UPLOAD=``); without, a
    query with an upload gets 400 and an error VOTable. ``multi_pos``: its SIA 2.0
    endpoint accepts several ``POS`` values in one request (OR-ed, as SIA 2.0
    says); without, such a request gets 400 and an error VOTable.
    """

    footprint: Footprint
    uploads: bool = True
    multi_pos: bool = True
    waveband: str = "optical"


@dataclass(frozen=True)
class FarmService:
    """One registry resource: a site's collection through one or more capabilities.

    ``key`` makes its ivoid (``ivo://vofarm.test/<key>``); ``kinds`` are some
    of :data:`KINDS` (at most one resource per kind on a host, since a host has
    one endpoint per protocol); ``served_by`` is the key of the resource that
    also serves this one's data (``isservedby``), or None.
    """

    key: str
    kinds: tuple[str, ...]
    host: int
    title: str
    served_by: str | None = None

    @property
    def ivoid(self) -> str:
        return f"ivo://vofarm.test/{self.key}"

    @property
    def res_type(self) -> str:
        # ObsCore tables are published as table resources with an auxiliary TAP capability.
        return "vs:catalogresource" if self.kinds == ("obscore",) else "vs:catalogservice"


@dataclass(frozen=True)
class FarmVO:
    """Sites (host index to :class:`Site`) and the resources that publish them."""

    sites: Mapping[int, Site]
    services: tuple[FarmService, ...]
    _by_key: dict[str, FarmService] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key: dict[str, FarmService] = {}
        offered: set[tuple[int, str]] = set()
        for service in self.services:
            if service.key in by_key:
                raise ParameterError(f"FarmVO: two services are called {service.key!r}")
            if service.host not in self.sites:
                raise ParameterError(f"FarmVO: {service.key!r} is on host {service.host}, no site")
            if not service.kinds or any(kind not in KINDS for kind in service.kinds):
                raise ParameterError(f"FarmVO: {service.key!r}: kinds must be some of {KINDS}")
            for kind in service.kinds:
                if (service.host, kind) in offered:
                    raise ParameterError(f"FarmVO: host {service.host} offers {kind} twice")
                offered.add((service.host, kind))
            by_key[service.key] = service
        for service in self.services:
            target = service.served_by
            if target is not None and (target not in by_key or target == service.key):
                raise ParameterError(f"FarmVO: {service.key!r} is served by unknown {target!r}")
        object.__setattr__(self, "_by_key", by_key)

    def prepare(self) -> None:
        """Build every site's coverage MOC now (about a second), not on the first query."""
        for site in self.sites.values():
            _ = site.footprint.moc_text

    @property
    def hosts(self) -> int:
        """The hosts a farm needs for this VO (host 0, the registry, included)."""
        return max(self.sites) + 1

    def service(self, key: str) -> FarmService:
        return self._by_key[key]

    def offering(self, host: int, kind: str) -> FarmService | None:
        """The resource that host ``host`` serves ``kind`` for, if any."""
        for service in self.services:
            if service.host == host and kind in service.kinds:
                return service
        return None

    def relationships(self) -> list[tuple[str, str]]:
        """(ivoid, related ivoid) of every ``isservedby`` relationship."""
        return [(s.ivoid, self._by_key[s.served_by].ivoid) for s in self.services if s.served_by]


def _fields(rng: random.Random, count: int, radius: tuple[float, float]) -> list[Cone]:
    """``count`` pointed fields at random places (|Dec| < 55), of radius in ``radius``."""
    cones = []
    for _ in range(count):
        ra = rng.uniform(0.0, 360.0)
        dec = rng.uniform(-55.0, 55.0)
        cones.append(Cone(round(ra, 4), round(dec, 4), round(rng.uniform(*radius), 3)))
    return cones


def discovery_vo(seed: int = 0) -> FarmVO:
    """The lineup of the discovery benchmark: 20 services on sites 1..17 (host 0: registry).

    - Survey stripes (Zones) and pointed fields (Cones, seeded), mostly disjoint.
    - Four ObsCore TAP services (one refuses uploads), eight SIA 2.0 (one refuses
      multi-POS; one resource offers SIA 1.0 and SIA 2.0 together), eight SIA 1.0.
    - Three ``isservedby`` relationships: two SIA 2.0 services served by the ObsCore
      TAP of their site, one SIA 1.0 service by the SIA 2.0 service of its site.
    """
    rng = random.Random(f"vofarm-vo-{seed}")
    sites: dict[int, Site] = {
        1: Site(Footprint([Zone(300.0, 60.0, -1.25, 1.25)])),
        2: Site(Footprint([Zone(120.0, 250.0, 30.0, 36.0)])),
        3: Site(Footprint([Zone(250.0, 290.0, -30.0, -20.0)]), uploads=False, waveband="infrared"),
        4: Site(Footprint(_fields(rng, 12, (0.8, 1.2)))),
        5: Site(Footprint([Zone(60.0, 120.0, -5.0, -2.0)])),
        6: Site(Footprint(_fields(rng, 20, (0.4, 0.6)))),
        7: Site(Footprint([Zone(90.0, 150.0, 10.0, 14.0)]), multi_pos=False),
        8: Site(Footprint(_fields(rng, 15, (0.5, 0.9))), waveband="uv"),
        9: Site(Footprint([Zone(0.0, 90.0, -40.0, -36.0)])),
        10: Site(Footprint(_fields(rng, 10, (0.8, 1.2)))),
        11: Site(Footprint([Zone(200.0, 215.0, 50.0, 55.0)])),
    }
    for host in range(12, 18):
        sites[host] = Site(Footprint(_fields(rng, 8, (0.3, 0.8))))
    services = [
        FarmService("stripe82/obscore", ("obscore",), 1, "VOFarm Stripe ObsCore"),
        FarmService(
            "stripe82/sia2", ("sia2",), 1, "VOFarm Stripe SIA 2.0", served_by="stripe82/obscore"
        ),
        FarmService("northcap/obscore", ("obscore",), 2, "VOFarm North Cap ObsCore"),
        FarmService("southfield/obscore", ("obscore",), 3, "VOFarm South Field ObsCore"),
        FarmService("deepfields/obscore", ("obscore",), 4, "VOFarm Deep Fields ObsCore"),
        FarmService(
            "deepfields/sia2",
            ("sia2",),
            4,
            "VOFarm Deep Fields SIA 2.0",
            served_by="deepfields/obscore",
        ),
        FarmService("equatorial/sia2", ("sia2",), 5, "VOFarm Equatorial SIA 2.0"),
        FarmService(
            "equatorial/sia1",
            ("sia1",),
            5,
            "VOFarm Equatorial SIA 1.0",
            served_by="equatorial/sia2",
        ),
        FarmService("clusters/sia2", ("sia2",), 6, "VOFarm Clusters SIA 2.0"),
        FarmService("ecliptic/sia2", ("sia2",), 7, "VOFarm Ecliptic SIA 2.0"),
        FarmService("nebulae/sia2", ("sia2",), 8, "VOFarm Nebulae SIA 2.0"),
        FarmService("southstripe/sia2", ("sia2",), 9, "VOFarm South Stripe SIA 2.0"),
        FarmService("legacy/sia", ("sia1", "sia2"), 10, "VOFarm Legacy SIA 1.0 and 2.0"),
        FarmService("polarcap/sia1", ("sia1",), 11, "VOFarm Polar Cap SIA 1.0"),
    ]
    for number, host in enumerate(range(12, 18), start=1):
        services.append(
            FarmService(f"pointed{number}/sia1", ("sia1",), host, f"VOFarm Pointed {number}")
        )
    return FarmVO(sites=sites, services=tuple(services))


def services_of(vo: FarmVO, kinds: Iterable[str]) -> list[FarmService]:
    """The resources offering any of ``kinds``."""
    wanted = set(kinds)
    return [service for service in vo.services if wanted & set(service.kinds)]
