"""Where a simulated collection has data: footprints, and the coverage MOCs the registry publishes.

A :class:`Footprint` is a union of simple shapes: :class:`Zone` (an RA/Dec
box, a survey stripe; RA may wrap through 0) and :class:`Cone` (a pointed
observation's field). A collection holds the sky tiles whose centre lies in
its footprint (:meth:`Footprint.tiles`), so a search of it answers nothing
outside it.

Its coverage is published as a MOC (:meth:`Footprint.moc`, built with
mocpy): the footprint grown by :data:`COVERAGE_MARGIN` first, so that every
tile of the collection lies inside it and every position whose search can
find one of those tiles does too. A client that tests a target against the
MOC therefore skips no target that a search would have answered with data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import ParameterError
from ._sky import TILE_DEG, Tile, search_tiles

if TYPE_CHECKING:
    from mocpy import MOC

__all__ = [
    "COVERAGE_MARGIN",
    "COVERAGE_ORDER",
    "Cone",
    "Footprint",
    "Zone",
    "moc_of_circle",
    "moc_of_disc",
    "parse_moc",
]

#: How far the published coverage reaches beyond the footprint (degrees): a tile's
#: half diagonal (the farthest a tile's corner is from its centre) twice over, so
#: the tiles of the footprint and the targets whose searches reach them are inside.
COVERAGE_MARGIN = TILE_DEG * math.sqrt(2)
#: The HEALPix order of published coverage MOCs (cells of about 0.23 degrees).
COVERAGE_ORDER = 8


def _mocpy() -> Any:
    try:
        import mocpy
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "VOFarm's coverage needs mocpy (pip install 'voharvest[test]' or pip install mocpy)"
        ) from exc
    return mocpy


def _check(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ParameterError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Zone:
    """An RA/Dec box in degrees; ``ra_min > ra_max`` wraps through RA 0 (a stripe like 300..60)."""

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    def __post_init__(self) -> None:
        _check("Zone.ra_min", self.ra_min, 0.0, 360.0)
        _check("Zone.ra_max", self.ra_max, 0.0, 360.0)
        _check("Zone.dec_min", self.dec_min, -90.0, 90.0)
        _check("Zone.dec_max", self.dec_max, -90.0, 90.0)
        if self.dec_min >= self.dec_max or self.ra_min == self.ra_max:
            raise ParameterError(f"{self!r} is empty")

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        ra = np.mod(ra, 360.0)
        if self.ra_min < self.ra_max:
            in_ra = (ra >= self.ra_min) & (ra <= self.ra_max)
        else:
            in_ra = (ra >= self.ra_min) | (ra <= self.ra_max)
        return np.asarray(in_ra & (dec >= self.dec_min) & (dec <= self.dec_max))

    def area(self) -> float:
        """Square degrees."""
        width = (self.ra_max - self.ra_min) % 360.0
        band = math.sin(math.radians(self.dec_max)) - math.sin(math.radians(self.dec_min))
        return math.degrees(math.radians(width) * band) * 180.0 / math.pi

    def moc(self, grow: float, order: int) -> MOC:
        from astropy.coordinates import SkyCoord

        dec_min = max(-90.0, self.dec_min - grow)
        dec_max = min(90.0, self.dec_max + grow)
        widest = max(abs(dec_min), abs(dec_max))
        cos = math.cos(math.radians(min(widest, 89.0)))
        grow_ra = grow / cos if widest < 89.0 else 180.0
        width = (self.ra_max - self.ra_min) % 360.0
        if width + 2 * grow_ra >= 360.0:
            pieces = [(0.0, 360.0)]
        else:
            low = (self.ra_min - grow_ra) % 360.0
            high = (self.ra_max + grow_ra) % 360.0
            pieces = [(low, high)] if low < high else [(low, 360.0), (0.0, high)]
        moc_class = _mocpy().MOC
        mocs = [
            moc_class.from_zone(
                SkyCoord([[a, dec_min], [b, dec_max]], unit="deg", frame="icrs"), max_depth=order
            )
            for a, b in pieces
        ]
        return mocs[0] if len(mocs) == 1 else mocs[0].union(*mocs[1:])


@dataclass(frozen=True)
class Cone:
    """A circle on the sky: centre and radius in degrees (a pointed observation's field)."""

    ra: float
    dec: float
    radius: float

    def __post_init__(self) -> None:
        _check("Cone.ra", self.ra, 0.0, 360.0)
        _check("Cone.dec", self.dec, -90.0, 90.0)
        _check("Cone.radius", self.radius, 0.0, 90.0)
        if self.radius == 0:
            raise ParameterError(f"{self!r} is empty")

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        return np.asarray(_separation(self.ra, self.dec, ra, dec) <= self.radius)

    def area(self) -> float:
        return 2 * math.pi * (1 - math.cos(math.radians(self.radius))) * (180 / math.pi) ** 2

    def moc(self, grow: float, order: int) -> MOC:
        return moc_of_circle(self.ra, self.dec, min(180.0, self.radius + grow), order)


Shape = Zone | Cone


def _separation(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Degrees from (ra0, dec0) to each position (haversine)."""
    r0, d0 = math.radians(ra0), math.radians(dec0)
    r, d = np.radians(ra), np.radians(dec)
    term = np.sin((d - d0) / 2) ** 2 + math.cos(d0) * np.cos(d) * np.sin((r - r0) / 2) ** 2
    return np.asarray(np.degrees(2 * np.arcsin(np.sqrt(np.clip(term, 0.0, 1.0)))))


def moc_of_circle(ra: float, dec: float, radius: float, order: int) -> MOC:
    """The MOC of the cells of ``order`` that a circle touches (as ADQL ``MOC(order, CIRCLE)``)."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude

    return _mocpy().MOC.from_cone(
        lon=Longitude(ra * u.deg),
        lat=Latitude(dec * u.deg),
        radius=max(radius, 1e-6) * u.deg,
        max_depth=order,
    )


@functools.cache
def _max_cell_radius(order: int) -> float:
    """The largest angle (degrees) from a HEALPix cell's centre to one of its corners at
    ``order``, measured over every cell of the order."""
    import astropy.units as u
    from cdshealpix import nested

    cells = np.arange(12 * 4**order, dtype=np.uint64)
    lon, lat = nested.healpix_to_lonlat(cells, order)
    corner_lon, corner_lat = nested.vertices(cells, order)
    ra = np.asarray(lon.to_value(u.deg))[:, None]
    dec = np.asarray(lat.to_value(u.deg))[:, None]
    r, d = np.radians(ra), np.radians(dec)
    cr, cd = np.radians(corner_lon.to_value(u.deg)), np.radians(corner_lat.to_value(u.deg))
    term = np.sin((cd - d) / 2) ** 2 + np.cos(d) * np.cos(cd) * np.sin((cr - r) / 2) ** 2
    return float(np.degrees(2 * np.arcsin(np.sqrt(np.clip(term, 0.0, 1.0)))).max())


def moc_of_disc(ra: float, dec: float, radius: float, order: int) -> MOC:
    """ADQL ``MOC(order, CIRCLE(ra, dec, radius))`` as pgsphere (DaCHS) makes it.

    HEALPix's inclusive disc: the cells of ``order`` whose centre lies within
    ``radius`` plus the largest cell radius of the order. Orders up to 8; finer
    ones fall back to :func:`moc_of_circle` (the cells the circle touches).
    """
    if order > 8:
        return moc_of_circle(ra, dec, radius, order)
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix import nested

    reach = radius + _max_cell_radius(order)
    lon, lat = Longitude(ra * u.deg), Latitude(dec * u.deg)
    cells, _, _ = nested.cone_search(lon, lat, reach * u.deg, order, flat=True)
    centre_lon, centre_lat = nested.healpix_to_lonlat(cells, order)
    distance = _separation(
        ra, dec, np.asarray(centre_lon.to_value(u.deg)), np.asarray(centre_lat.to_value(u.deg))
    )
    kept = np.asarray(cells[distance <= reach], dtype=np.uint64)
    depths = np.full(len(kept), order, dtype=np.uint8)
    return _mocpy().MOC.from_healpix_cells(kept, depths, max_depth=order)


def parse_moc(text: str) -> MOC:
    """An ASCII MOC (``"6/1234-1240 7/..."``) as a mocpy MOC."""
    return _mocpy().MOC.from_str(text)


class Footprint:
    """A union of :class:`Zone` and :class:`Cone` shapes: where a collection has data."""

    def __init__(self, shapes: Iterable[Shape]) -> None:
        self.shapes: tuple[Shape, ...] = tuple(shapes)
        if not self.shapes or not all(isinstance(s, Zone | Cone) for s in self.shapes):
            raise ParameterError(f"Footprint: expected Zones and Cones, got {self.shapes!r}")

    def __repr__(self) -> str:
        return f"Footprint({list(self.shapes)!r})"

    def contains(self, ra: Sequence[float] | np.ndarray, dec: Sequence[float] | np.ndarray) -> Any:
        """A boolean array: which positions lie in the footprint."""
        ras = np.asarray(ra, dtype=float)
        decs = np.asarray(dec, dtype=float)
        inside = np.zeros(np.broadcast(ras, decs).shape, dtype=bool)
        for shape in self.shapes:
            inside |= shape.contains(ras, decs)
        return inside

    def area(self) -> float:
        """Square degrees, overlaps between shapes counted twice."""
        return sum(shape.area() for shape in self.shapes)

    def tiles(self, ra: float, dec: float, radius: float, limit: int) -> list[Tile]:
        """The tiles a search at (ra, dec, radius) finds in this collection, nearest first.

        :func:`~voharvest.testing.search_tiles` of the whole sky, less those
        whose centre lies outside the footprint: possibly none.
        """
        found = search_tiles(ra, dec, radius, limit)
        keep = self.contains([t.ra for t in found], [t.dec for t in found])
        return [tile for tile, kept in zip(found, keep, strict=True) if kept]

    @cached_property
    def _moc(self) -> MOC:
        mocs = [shape.moc(COVERAGE_MARGIN, COVERAGE_ORDER) for shape in self.shapes]
        return mocs[0] if len(mocs) == 1 else mocs[0].union(*mocs[1:])

    def moc(self) -> MOC:
        """The published coverage: the footprint grown by :data:`COVERAGE_MARGIN`, as a MOC."""
        return self._moc

    @cached_property
    def moc_text(self) -> str:
        """:meth:`moc` as an ASCII MOC, as RegTAP's ``rr.stc_spatial.coverage`` gives it."""
        return str(self._moc.to_string(format="ascii", fold=0)).strip()
