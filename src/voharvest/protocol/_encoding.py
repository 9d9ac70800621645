"""Shared encoding helpers: numbers, angles, positions, ADQL literals, access URLs.

Everything here is pure and raises :class:`~voharvest.ParameterError` on bad
input, naming the parameter at fault.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from .._exceptions import ParameterError

__all__ = [
    "MAX_ANGLE",
    "Params",
    "adql_string",
    "angle",
    "as_list",
    "endpoints",
    "format_number",
    "is_quantity",
    "is_skycoord",
    "is_time",
    "join_url",
    "named_parameters",
    "position_degrees",
    "to_degrees",
    "to_float",
]

#: Query parameters in the order they are sent; a name may repeat.
Params = list[tuple[str, str]]

# Characters left readable in query values; everything else is percent-encoded
# (notably "+", which a server would read as a space, and "&", "=", "#").
_SAFE = ",/:*"


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
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
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
        from astropy import units as u  # text is read by astropy's unit parser

        text = value.strip()
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


def format_number(value: float) -> str:
    """The shortest text that reads back as ``value``; infinities as DALI's ``+Inf``/``-Inf``."""
    if math.isnan(value):
        raise ParameterError("NaN can't be sent")
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


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


def as_list(value: Any) -> list[Any]:
    """A list from one value or an iterable of values (a string is one value)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def endpoints(value: Any, name: str) -> list[Any]:
    """One or two ends of a point or interval value (a pair, a 2-element Quantity or
    Time, or one value); None marks an open end, but not both."""
    if (is_quantity(value) or is_time(value)) and not value.isscalar:
        items = list(value)
    elif isinstance(value, tuple | list):
        items = list(value)
    else:
        items = [value]
    if len(items) not in (1, 2) or all(item is None for item in items):
        raise ParameterError(f"{name}: expected a value or a (low, high) pair, got {value!r}")
    return items


def adql_string(value: str, name: str = "value") -> str:
    """``value`` as an ADQL character literal: quoted, inner quotes doubled.

    ADQL (like SQL) knows no escapes inside literals but the doubled quote;
    backslashes, percent signs and any unicode stay plain characters. NUL and
    other C0 control characters can't be stored by registries and are refused.
    """
    if not isinstance(value, str):
        raise ParameterError(f"{name}: expected a string, got {value!r}")
    for char in value:
        if ord(char) < 32 and char not in "\t\n\r":
            raise ParameterError(f"{name}: control character {char!r} not allowed in {value!r}")
    return "'" + value.replace("'", "''") + "'"


def join_url(access_url: str, params: Params) -> str:
    """``access_url`` with ``params`` appended to its query string.

    The access URL is kept as its service published it: an existing query
    string stays, a trailing ``?`` or ``&`` is handled, and a parameter already
    preset in the URL (compared case-insensitively, as DAL parameters are) is
    not sent a second time.
    """
    if not isinstance(access_url, str):
        raise ParameterError(f"access URL: expected a string, got {access_url!r}")
    parts = urlsplit(access_url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ParameterError(f"access URL: {access_url!r} is not an http(s) URL")
    preset = {key.upper() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    existing = parts.query.strip("&")
    try:
        added = "&".join(
            f"{quote(key, safe='')}={quote(value, safe=_SAFE)}"
            for key, value in params
            if key.upper() not in preset
        )
    except UnicodeEncodeError as exc:
        raise ParameterError(f"a parameter can't be encoded as UTF-8: {exc}") from exc
    query = "&".join(part for part in (existing, added) if part)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def named_parameters(
    given: Mapping[str, Any], keywords: Mapping[str, str], protocol: str
) -> tuple[dict[str, tuple[str, Any]], list[tuple[str, Any]]]:
    """Keyword arguments sorted into a protocol's own parameters and the service's.

    ``keywords`` maps every lower-case keyword the protocol accepts (the
    standard's names in lower case, this library's and pyvo's spellings) to the
    standard's parameter name. A keyword in lower case must be one of them
    (ParameterError naming them all: a misspelt constraint must not be sent as a
    parameter the service ignores); a name with an upper-case letter is the
    standard's parameter if it is one (``CALIB``), else a service-specific
    parameter, sent as given. Returns ``{standard name: (keyword, value)}``
    without the None values, and the service-specific ``(name, value)`` pairs.
    """
    standard = set(keywords.values())
    known: dict[str, tuple[str, Any]] = {}
    passed: list[tuple[str, Any]] = []
    for name, value in given.items():
        if name == name.lower():
            if name not in keywords:
                raise ParameterError(
                    f"{protocol}: unknown parameter {name!r}; the {protocol} parameters are "
                    f"{', '.join(sorted(keywords))}. A service-specific parameter goes in "
                    f"upper case ({name.upper()}=...) or in extra={{{name!r}: ...}}, sent as given"
                )
            key = keywords[name]
        elif name.upper() in standard:
            key = name.upper()
        else:
            passed.append((name, value))
            continue
        if value is None:
            continue
        if key in known:
            raise ParameterError(f"{protocol}: {key} given twice, as {known[key][0]} and {name}")
        known[key] = (name, value)
    return known, passed
