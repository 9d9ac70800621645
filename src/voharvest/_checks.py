"""Checks of what callers pass in: counts, numbers, http(s) URLs, angles, positions.

One place for each rule, so that every parameter of the library is read the
same way and a bad one gets the same clear :class:`~voharvest.ParameterError`,
naming the parameter at fault:

- :func:`is_int` / :func:`count`: an integer that is not a bool (Python's
  ``True`` is an ``int``, never a count to us);
- :func:`is_number` / :func:`positive`: a real number that is not a bool;
- :func:`http_parts` / :func:`http_url` / :func:`http_origin`: an http or
  https URL with a host (and a valid port), and its origin;
- :func:`angle`: every size or radius the library takes (a number of degrees,
  a Quantity, or text such as ``"2arcmin"``), read by astropy's unit parser;
- :func:`position_degrees`: ICRS (ra, dec) from a SkyCoord or a pair.

Pure (no I/O, astropy only imported to read text angles): the protocol layer
uses it as well as the client and the harvest.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import SplitResult, urlsplit

from ._exceptions import ParameterError

__all__ = [
    "MAX_ANGLE",
    "angle",
    "count",
    "http_origin",
    "http_parts",
    "http_url",
    "is_http_url",
    "is_int",
    "is_number",
    "is_quantity",
    "is_skycoord",
    "is_time",
    "position_degrees",
    "positive",
    "to_degrees",
    "to_float",
]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an ``int`` and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (int, float, numpy scalar) and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def count(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``."""
    if not is_int(value) or value < minimum:
        raise ParameterError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def positive(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """``value`` if it is a number above zero (infinity only if ``allow_inf``)."""
    if not is_number(value):
        raise ParameterError(f"{name}: expected a number, got {value!r}")
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        raise ParameterError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def _split_http(url: Any, what: str) -> tuple[SplitResult, str, int | None]:
    """(parts, host, port) of an http(s) URL with a host and a valid port."""
    if not isinstance(url, str):
        raise ParameterError(f"{what}: expected a URL, got {url!r}")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port  # a port not in 0..65535 raises here
    except ValueError as exc:  # that, or a bad IPv6 literal
        raise ParameterError(f"{what}: {url!r} is not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ParameterError(f"{what}: {url!r} is not an http(s) URL")
    return parts, host, port


def http_parts(url: Any, what: str = "URL") -> SplitResult:
    """The parts of ``url`` if it is an http(s) URL with a host and a valid port.

    ParameterError naming ``what`` otherwise. The scheme comes back lower-cased
    (``urlsplit`` does that); the URL is not otherwise changed.
    """
    return _split_http(url, what)[0]


def http_origin(url: Any, what: str = "URL") -> str:
    """``scheme://host:port`` of an http(s) URL (default ports made explicit), lower-cased."""
    parts, host, port = _split_http(url, what)
    scheme = parts.scheme
    return f"{scheme}://{host}:{port or (443 if scheme == 'https' else 80)}"


def http_url(url: Any, what: str = "URL") -> str:
    """``url`` itself if it is an http(s) URL (see :func:`http_parts`)."""
    http_parts(url, what)
    return str(url)


def is_http_url(url: Any) -> bool:
    """Whether ``url`` is an http(s) URL (see :func:`http_parts`)."""
    try:
        http_parts(url)
    except ParameterError:
        return False
    return True


# astropy is imported where positions or units are built, not to read a number:
# a value can be a Quantity, SkyCoord or Time only once astropy's module of that
# class was imported, so asking sys.modules answers isinstance without importing it.


def is_quantity(value: Any) -> bool:
    """Whether ``value`` is an astropy Quantity (an Angle, say)."""
    units = sys.modules.get("astropy.units")
    return units is not None and isinstance(value, units.Quantity)


def is_skycoord(value: Any) -> bool:
    """Whether ``value`` is an astropy SkyCoord."""
    coordinates = sys.modules.get("astropy.coordinates")
    return coordinates is not None and isinstance(value, coordinates.SkyCoord)


def is_time(value: Any) -> bool:
    """Whether ``value`` is an astropy Time."""
    time = sys.modules.get("astropy.time")
    return time is not None and isinstance(value, time.Time)


def to_float(value: Any, name: str) -> float:
    """A plain real number from ``value`` or a ParameterError naming ``name``."""
    if not is_number(value):
        raise ParameterError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ParameterError(f"{name}: NaN is not a valid value")
    return number


def to_degrees(value: Any, name: str) -> float:
    """An angle in degrees from a Quantity (any angular unit) or a plain number."""
    if is_quantity(value):
        from astropy import units as u

        if not value.isscalar:
            raise ParameterError(f"{name}: expected one angle, got {value!r}")
        try:
            value = value.to_value(u.deg)
        except u.UnitConversionError as exc:
            raise ParameterError(f"{name}: {value} is not an angle") from exc
    return to_float(value, name)


#: The largest size or radius, in degrees: a size (an SIA 1.0 SIZE, a harvest's
#: size, a box's side) is at most half the sky across, and so is a circle's radius.
MAX_ANGLE = 180.0


def angle(value: Any, name: str, *, maximum: float = MAX_ANGLE) -> float:
    """A size or radius in degrees, in (0, ``maximum``]: every one the library takes.

    ``value``: a number (degrees), a Quantity in any angular unit, or text:
    ``"2arcmin"``, ``"0.2deg"``, ``"30 arcsec"``, or a bare number (degrees,
    as a number is). ParameterError naming ``name`` otherwise.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            number = None  # not a bare number: an angle with its unit
        if number is not None:
            return angle(number, name, maximum=maximum)  # degrees, as a number is
        from astropy import units as u  # text with a unit is read by astropy's unit parser

        try:
            quantity = u.Quantity(text)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"{name}: {text!r} is not an angle such as '2arcmin', '0.2deg' or 0.2 (degrees)"
            ) from exc
        value = quantity.value if quantity.unit == u.dimensionless_unscaled else quantity
    degrees = to_degrees(value, name)
    if not 0.0 < degrees <= maximum:
        raise ParameterError(f"{name}: {degrees:g} deg is outside (0, {maximum:g}] deg")
    return degrees


def position_degrees(pos: Any, name: str = "pos") -> tuple[float, float]:
    """ICRS (ra, dec) in degrees from a SkyCoord (any frame) or an (ra, dec) pair.

    RA is wrapped into [0, 360); Dec outside [-90, 90] and non-finite values are errors.
    A string (an object name) must be resolved first, which needs the network.
    """
    if isinstance(pos, str):
        raise ParameterError(
            f"{name}: {pos!r} is a name; resolve it to a position first "
            "(VOClient.resolve does this with Sesame)"
        )
    if is_skycoord(pos):
        if not pos.isscalar:
            raise ParameterError(f"{name}: expected one position, got {len(pos)}")
        icrs = pos.icrs
        ra, dec = float(icrs.ra.deg), float(icrs.dec.deg)
    else:
        if is_quantity(pos) and not pos.isscalar:
            pos = list(pos)
        if not isinstance(pos, Sequence) or len(pos) != 2:
            raise ParameterError(
                f"{name}: expected a SkyCoord or an (ra, dec) pair in degrees, got {pos!r}"
            )
        ra, dec = to_degrees(pos[0], f"{name} RA"), to_degrees(pos[1], f"{name} Dec")
    if not (math.isfinite(ra) and math.isfinite(dec)):
        raise ParameterError(f"{name}: position must be finite, got ({ra}, {dec})")
    if not -90.0 <= dec <= 90.0:
        raise ParameterError(f"{name}: Dec {dec} is outside [-90, 90]")
    ra %= 360.0
    return (0.0 if ra >= 360.0 else ra), dec
