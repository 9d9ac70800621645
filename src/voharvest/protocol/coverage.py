"""Which targets a footprint holds: coverage MOCs against search circles, without I/O.

A service's coverage (an ASCII MOC from ``rr.stc_spatial``) is read with mocpy;
a target's circle becomes a MOC of the same order, made as the registry makes
it (:data:`CONE_MODES`), and the two are compared (:data:`INTERSECT_MODES`).
Targets are any objects with ``ra``, ``dec`` and ``radius`` in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .._exceptions import ParameterError

__all__ = ["CONE_MODES", "INTERSECT_MODES", "Cones", "Coverage", "inside", "max_cell_radius"]

#: How a target's circle must meet a service's coverage: ``covers`` (the
#: coverage holds the whole circle, at the MOC order: pyvo's registry
#: constraint) or ``overlaps`` (they share a cell).
INTERSECT_MODES = ("covers", "overlaps")


class Coverage:
    """A service's footprint (a MOC), tested against many targets at once.

    ``order``: the targets' circles become MOCs of this order (pyvo's
    registry constraint uses 6, RegTAP's recommended coverage order) before
    they are compared with the footprint; ``intersect`` as
    :data:`INTERSECT_MODES`.
    """

    def __init__(self, moc: Any) -> None:
        self.moc = moc

    @classmethod
    def from_ascii(cls, text: str) -> Coverage:
        from mocpy import MOC

        try:
            return cls(MOC.from_string(" ".join(text.split()), format="ascii"))
        except Exception as exc:  # mocpy raises ValueError or its own
            raise ParameterError(f"not an ASCII MOC: {text[:80]!r} ({exc})") from exc

    def contains_centres(self, targets: Sequence[Any]) -> list[bool]:
        """For each target, whether its centre lies in the footprint."""
        if not targets:
            return []
        from astropy import units as u
        from astropy.coordinates import Latitude, Longitude

        lon = Longitude([t.ra for t in targets] * u.deg)
        lat = Latitude([t.dec for t in targets] * u.deg)
        return [bool(v) for v in self.moc.contains_lonlat(lon, lat)]


#: How a target's circle becomes a MOC: ``inclusive``, as HEALPix's inclusive
#: disc query does it (every cell whose centre lies within the radius plus
#: the largest cell radius of the order): the MOC that pgsphere, and so DaCHS
#: and the GAVO registry, make of ``MOC(order, CIRCLE(...))`` in pyvo's
#: registry constraint; ``exact``: the cells the circle really touches (mocpy).
CONE_MODES = ("inclusive", "exact")


def max_cell_radius(order: int) -> float:
    """The largest angle (radians) from a HEALPix cell's centre to its corners at
    ``order`` (HEALPix C++ ``Healpix_Base::max_pixrad``; Gorski et al. 2005,
    ApJ 622, 759): between the points z=2/3, phi=pi/(4 nside) and
    z=1-(1-1/nside)^2/3, phi=0."""
    nside = 2**order

    def unit(z: float, phi: float) -> tuple[float, float, float]:
        s = math.sqrt(max(0.0, 1.0 - z * z))
        return (s * math.cos(phi), s * math.sin(phi), z)

    a = unit(2.0 / 3.0, math.pi / (4 * nside))
    b = unit(1.0 - (1.0 - 1.0 / nside) ** 2 / 3.0, 0.0)
    cross = (
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    )
    return math.atan2(
        math.sqrt(sum(c * c for c in cross)), sum(x * y for x, y in zip(a, b, strict=True))
    )


class Cones:
    """The targets' circles as MOCs of one order, each made once."""

    def __init__(self, targets: Sequence[Any], order: int, cone: str) -> None:
        self.targets = targets
        self.order = order
        self.cone = cone
        self._mocs: dict[int, Any] = {}

    def moc(self, index: int) -> Any:
        found = self._mocs.get(index)
        if found is None:
            found = self._mocs[index] = self._make(self.targets[index])
        return found

    def _make(self, target: Any) -> Any:
        from astropy import units as u
        from astropy.coordinates import Latitude, Longitude
        from mocpy import MOC

        lon, lat = Longitude(target.ra * u.deg), Latitude(target.dec * u.deg)
        if self.cone == "exact":
            return MOC.from_cone(lon, lat, radius=target.radius * u.deg, max_depth=self.order)
        import numpy as np
        from cdshealpix import nested

        reach = math.radians(target.radius) + max_cell_radius(self.order)
        cells, _, _ = nested.cone_search(lon, lat, reach * u.rad, self.order, flat=True)
        cell_lon, cell_lat = nested.healpix_to_lonlat(cells, self.order)
        ra, dec = math.radians(target.ra), math.radians(target.dec)
        cosine = np.sin(cell_lat.rad) * math.sin(dec) + np.cos(cell_lat.rad) * math.cos(
            dec
        ) * np.cos(cell_lon.rad - ra)
        kept = cells[np.arccos(np.clip(cosine, -1.0, 1.0)) <= reach]
        depths = np.full(len(kept), self.order, dtype=np.uint8)
        return MOC.from_healpix_cells(kept.astype(np.uint64), depths, max_depth=self.order)


def inside(coverage: Coverage, cones: Cones, intersect: str) -> list[bool]:
    targets = cones.targets
    if intersect == "covers":
        # The circle's MOC holds its centre's cell: a centre outside the
        # footprint settles it without building the circle's MOC.
        centres = coverage.contains_centres(targets)
        return [
            centre and bool(cones.moc(i).difference(coverage.moc).empty())
            for i, centre in enumerate(centres)
        ]
    return [not bool(cones.moc(i).intersection(coverage.moc).empty()) for i in range(len(targets))]
