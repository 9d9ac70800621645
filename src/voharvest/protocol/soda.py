"""SODA cutouts: what to cut around a position, as a SODA service's parameters.

A :class:`Cutout` is a shape centred on each target — a circle of a radius
or a box of a width and height (angles: Quantity, ``"3arcmin"``, or degrees)
— and optionally a spectral band (Quantity interval, or metres). For a
target it becomes the parameters of a synchronous SODA request (IVOA SODA
1.0, DALI 1.1 geometry): ``CIRCLE=ra dec radius`` or ``POLYGON=ra1 dec1 ...``
(degrees), or the same shapes through ``POS`` when the service offers only
that, and ``BAND=low high`` (metres).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._checks import is_number
from .._exceptions import ParameterError, UnsupportedConstraintError
from ._descriptors import ServiceDescriptor
from ._encoding import MAX_ANGLE, angle, format_number, is_quantity

__all__ = ["Cutout", "soda_params"]


def _angle(value: Any, name: str) -> float:
    # A radius is at most 90 deg: its cutout, 2 radii across, fits an SIA 1.0 SIZE.
    return angle(value, name, maximum=90.0 if name.endswith("radius") else MAX_ANGLE)


def _wavelength(value: Any, name: str) -> float:
    if is_quantity(value):
        from astropy import units as u  # (loaded already: value is a Quantity)

        try:
            value = value.to_value(u.m, equivalencies=u.spectral())
        except u.UnitConversionError as exc:
            raise ParameterError(f"{name}: {value!r} is not a wavelength") from exc
    if not is_number(value):
        raise ParameterError(f"{name}: expected metres or a Quantity, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ParameterError(f"{name}: {number} m is not a wavelength")
    return number


@dataclass(frozen=True)
class Cutout:
    """The region to cut around each target: a circle, or a box; optionally a band.

    Build with :meth:`circle`, :meth:`box` or :meth:`parse`; angles are kept
    in degrees, the band in metres.
    """

    radius: float | None = None
    width: float | None = None
    height: float | None = None
    band: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        circle = self.radius is not None
        box = self.width is not None or self.height is not None
        if circle == box:
            raise ParameterError("a cutout is a circle (radius) or a box (width, height)")
        if box and (self.width is None or self.height is None):
            raise ParameterError("a box cutout needs a width and a height")
        for name in ("radius", "width", "height"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _angle(value, f"cutout {name}"))
        if self.width is not None and (self.width >= 180 or (self.height or 0) >= 180):
            raise ParameterError("a box cutout must be narrower than 180 deg")
        if self.band is not None:
            band: Any = self.band
            if is_quantity(band) and not band.isscalar:
                object.__setattr__(self, "band", tuple(band))
            if not isinstance(self.band, Sequence) or len(self.band) != 2:
                raise ParameterError(f"cutout band: expected (low, high), got {self.band!r}")
            low, high = (_wavelength(v, "cutout band") for v in self.band)
            if low > high:
                low, high = high, low
            object.__setattr__(self, "band", (low, high))

    @classmethod
    def circle(cls, radius: Any, *, band: Any = None) -> Cutout:
        """A circle of ``radius`` (Quantity, ``"3arcmin"`` or degrees)."""
        return cls(radius=radius, band=band)

    @classmethod
    def box(cls, width: Any, height: Any = None, *, band: Any = None) -> Cutout:
        """A box ``width`` x ``height`` (a square if ``height`` is None) on the sky."""
        return cls(width=width, height=width if height is None else height, band=band)

    @classmethod
    def parse(cls, value: Any) -> Cutout:
        """A Cutout from a Cutout, a radius (Quantity, degrees) or text.

        Text is a radius (``"3arcmin"``) or a box (``"4arcmin x 2arcmin"``).
        """
        if isinstance(value, Cutout):
            return value
        if isinstance(value, str) and "x" in value.replace("arcmin", "").replace("arcsec", ""):
            parts = [p for p in _split_box(value) if p]
            if len(parts) != 2:
                raise ParameterError(f"cutout: expected 'WIDTH x HEIGHT', got {value!r}")
            return cls.box(parts[0], parts[1])
        return cls.circle(value)

    @property
    def shape(self) -> str:
        return "CIRCLE" if self.radius is not None else "POLYGON"

    def geometry(self, ra: float, dec: float) -> str:
        """The DALI value of the region around (ra, dec): ``ra dec r`` or polygon vertices."""
        if self.radius is not None:
            return " ".join(format_number(v) for v in (ra, dec, self.radius))
        return " ".join(format_number(v) for vertex in self.vertices(ra, dec) for v in vertex)

    def vertices(self, ra: float, dec: float) -> list[tuple[float, float]]:
        """The box's corners (degrees), counter-clockwise as seen on the sky."""
        if self.width is None or self.height is None:
            raise ParameterError("a circle cutout has no vertices")
        half_x = math.tan(math.radians(self.width) / 2)
        half_y = math.tan(math.radians(self.height) / 2)
        corners = [(half_x, -half_y), (half_x, half_y), (-half_x, half_y), (-half_x, -half_y)]
        return [_from_tangent(ra, dec, x, y) for x, y in corners]

    def describe(self, ra: float, dec: float) -> str:
        """The region as text for a manifest, e.g. ``CIRCLE 202.47 47.2 0.05``."""
        text = f"{self.shape} {self.geometry(ra, dec)}"
        if self.band is not None:
            text += f" BAND {format_number(self.band[0])} {format_number(self.band[1])}"
        return text

    @property
    def extent(self) -> tuple[float, float]:
        """Width and height (degrees) of the box around the shape: an SIA 1.0 SIZE."""
        if self.radius is not None:
            return 2 * self.radius, 2 * self.radius
        assert self.width is not None and self.height is not None
        return self.width, self.height

    def journal_view(self) -> dict[str, Any]:
        """Deprecated: what a harvest's journal keeps of a cutout is the harvest's business
        (``HarvestOptions.journal_view()``); the cutout's fields are its attributes."""
        warnings.warn(
            "Cutout.journal_view() is deprecated; see HarvestOptions.journal_view()",
            DeprecationWarning,
            stacklevel=2,
        )
        return {"radius": self.radius, "width": self.width, "height": self.height,
                "band": list(self.band) if self.band else None}  # fmt: skip


def _split_box(text: str) -> list[str]:
    """The two sides of ``"4arcmin x 2arcmin"``."""
    return [piece.strip() for piece in text.replace("\u00d7", "x").split("x")]


def _from_tangent(ra: float, dec: float, x: float, y: float) -> tuple[float, float]:
    """The sky position of tangent-plane offsets (x east, y north) around (ra, dec)."""
    alpha0, delta0 = math.radians(ra), math.radians(dec)
    rho = math.hypot(x, y)
    if rho == 0:
        return ra, dec
    c = math.atan(rho)
    sin_c, cos_c = math.sin(c), math.cos(c)
    delta = math.asin(cos_c * math.sin(delta0) + y * sin_c * math.cos(delta0) / rho)
    alpha = alpha0 + math.atan2(
        x * sin_c, rho * math.cos(delta0) * cos_c - y * math.sin(delta0) * sin_c
    )
    return math.degrees(alpha) % 360.0, math.degrees(delta)


def soda_params(
    descriptor: ServiceDescriptor, ra: float, dec: float, cutout: Cutout
) -> list[tuple[str, str]]:
    """The parameters asking ``descriptor``'s service for ``cutout`` around (ra, dec).

    The service's own spatial parameter is used (CIRCLE or POLYGON, else POS
    with the shape's name in front); UnsupportedConstraintError if it takes
    neither, or if a band is asked of a service without BAND.
    """
    params: list[tuple[str, str]] = []
    geometry = cutout.geometry(ra, dec)
    if descriptor.param(cutout.shape) is not None:
        params.append((cutout.shape, geometry))
    elif descriptor.param("POS") is not None:
        params.append(("POS", f"{cutout.shape} {geometry}"))
    else:
        raise UnsupportedConstraintError(
            f"the SODA service at {descriptor.access_url} takes neither {cutout.shape} nor POS"
        )
    if cutout.band is not None:
        if descriptor.param("BAND") is None:
            raise UnsupportedConstraintError(
                f"the SODA service at {descriptor.access_url} takes no BAND"
            )
        low, high = cutout.band
        params.append(("BAND", f"{format_number(low)} {format_number(high)}"))
    return params
