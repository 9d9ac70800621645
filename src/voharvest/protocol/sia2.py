"""Simple Image Access 2.0: search parameters (DALI encoded) to a query URL.

Shapes are written ``CIRCLE ra dec radius``, ``RANGE ra1 ra2 dec1 dec2`` and
``POLYGON ra1 dec1 ...`` in ICRS degrees; numeric intervals as ``low high``
with ``-Inf``/``+Inf`` for open ends. Every list becomes repeated parameters
(all targets are sent, not the last one), and zero values (``CALIB=0``,
``MAXREC=0``) are sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .._checks import is_int
from .._exceptions import ParameterError
from ._encoding import (
    Params,
    angle,
    as_list,
    endpoints,
    format_number,
    is_quantity,
    is_skycoord,
    is_time,
    join_url,
    named_parameters,
    position_degrees,
    to_degrees,
)
from ._encoding import to_float as _to_float
from .sia1 import extra_params

__all__ = [
    "KEYWORDS",
    "PARAMETERS",
    "POLARIZATION_STATES",
    "build_params",
    "build_url",
    "encode_interval",
    "encode_pos",
]

#: Polarization states SIA 2.0 knows (POL).
POLARIZATION_STATES = (
    "I",
    "Q",
    "U",
    "V",
    "RR",
    "LL",
    "RL",
    "LR",
    "XX",
    "YY",
    "XY",
    "YX",
    "POLI",
    "POLA",
)


def _is_scalar(value: Any) -> bool:
    if is_quantity(value) or is_skycoord(value) or is_time(value):
        return bool(value.isscalar)
    return not isinstance(value, Sequence) or isinstance(value, str)


def _bound(value: Any, name: str, *, low: float, high: float) -> float:
    """A coordinate in degrees within [low, high]; infinities allowed (open range)."""
    degrees = to_degrees(value, name)
    if math.isfinite(degrees) and not low <= degrees <= high:
        raise ParameterError(f"{name}: {degrees} deg is outside [{low}, {high}]")
    return degrees


def _circle(center: Any, radius: Any) -> str:
    ra, dec = position_degrees(center, "pos")
    r = angle(radius, "pos radius")
    return f"CIRCLE {format_number(ra)} {format_number(dec)} {format_number(r)}"


def _range(values: list[Any]) -> str:
    ra1, ra2 = (_bound(v, "pos RANGE ra", low=0.0, high=360.0) for v in values[:2])
    dec1, dec2 = (_bound(v, "pos RANGE dec", low=-90.0, high=90.0) for v in values[2:])
    if ra1 > ra2 or dec1 > dec2:
        raise ParameterError(
            f"pos: RANGE needs ra1 <= ra2 and dec1 <= dec2, got {ra1} {ra2} {dec1} {dec2}"
        )
    return "RANGE " + " ".join(format_number(v) for v in (ra1, ra2, dec1, dec2))


def _polygon(vertices: list[tuple[float, float]]) -> str:
    if len(vertices) < 3:
        raise ParameterError(f"pos: a polygon needs at least 3 vertices, got {len(vertices)}")
    return "POLYGON " + " ".join(
        f"{format_number(ra)} {format_number(dec)}" for ra, dec in vertices
    )


def encode_pos(shape: Any) -> str:
    """One POS value from a shape.

    ``(ra, dec, radius)`` or ``(SkyCoord, radius)`` is a circle, four values a
    RANGE (``ra1, ra2, dec1, dec2``; infinite ends allowed), and three or more
    vertices (``[(ra, dec), ...]``, a SkyCoord array, or a flat even list of six
    or more numbers) a polygon. Numbers are degrees; Quantities any angle.
    """
    if is_skycoord(shape) and not shape.isscalar:
        return _polygon([position_degrees(c, "pos vertex") for c in shape])
    if is_quantity(shape) and not shape.isscalar:
        shape = list(shape)
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise ParameterError(
            f"pos: expected a circle (ra, dec, radius), a range or a polygon, got {shape!r}"
        )
    items = list(shape)
    if len(items) == 2 and is_skycoord(items[0]):
        return _circle(items[0], items[1])
    if all(not _is_scalar(item) for item in items):
        return _polygon([position_degrees(item, "pos vertex") for item in items])
    if len(items) == 3:
        return _circle(items[:2], items[2])
    if len(items) == 4:
        return _range(items)
    if len(items) >= 6 and len(items) % 2 == 0:
        return _polygon(
            [position_degrees(items[i : i + 2], "pos vertex") for i in range(0, len(items), 2)]
        )
    raise ParameterError(f"pos: can't tell the shape of {shape!r}")


def _shapes(pos: Any) -> list[Any]:
    """One shape, or a list of shapes (a list whose items are all shapes)."""
    if (
        isinstance(pos, list | tuple)
        and pos
        and all(
            (is_skycoord(item) and not item.isscalar)
            or (
                isinstance(item, list | tuple)
                and not (
                    len(item) == 2
                    and _is_scalar(item[0])
                    and _is_scalar(item[1])
                    and not is_skycoord(item[0])
                )
            )
            for item in pos
        )
    ):
        return list(pos)
    return [pos]


def encode_interval(
    value: Any,
    name: str,
    unit: Any,
    *,
    equivalencies: Any = None,
    lower: float | None = None,
) -> str:
    """A DALI interval ``low high`` from a value or a (low, high) pair.

    Quantities are converted to ``unit`` (an astropy unit or its text, such as
    ``"m"``; with ``equivalencies``, or ``"spectral"`` for those), plain numbers
    are taken to be in ``unit`` already, None is an open end (``-Inf``/``+Inf``).
    A single value is the interval from it to itself. The ends are put in order;
    a conversion that reverses the axis (frequency or energy to wavelength) also
    turns an open upper end into an open lower end.
    """
    items = endpoints(value, name)
    reversing = False
    numbers: list[float | None] = []
    for item in items:
        if item is None:
            numbers.append(None)
            continue
        if is_time(item):
            from astropy.time.core import ScaleValueError

            if _unit(unit) != _unit("d"):
                raise ParameterError(f"{name}: a Time is not a valid value here")
            try:  # DALI: TIME values are MJD in UTC
                mjd = item.utc.mjd
            except ScaleValueError as exc:
                raise ParameterError(f"{name}: {item!r} can't be converted to UTC") from exc
            numbers.append(_to_float(float(mjd), name))
            continue
        if is_quantity(item):
            from astropy import units as u

            unit = _unit(unit)
            if equivalencies == "spectral":
                equivalencies = u.spectral()
            try:
                converted = float(item.to_value(unit, equivalencies=equivalencies or []))
            except u.UnitConversionError as exc:
                raise ParameterError(f"{name}: {item!r} can't be converted to {unit}") from exc
            if equivalencies and not item.unit.is_equivalent(unit):
                reversing = True
            numbers.append(_to_float(converted, name))
            continue
        numbers.append(_to_float(item, name))
    low, high = (numbers[0], numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
    if reversing:
        low, high = high, low
    lo = -math.inf if low is None else low
    hi = math.inf if high is None else high
    if lo > hi:
        lo, hi = hi, lo
    if lower is not None and math.isfinite(lo) and lo < lower:
        raise ParameterError(f"{name}: values below {lower} are not valid, got {value!r}")
    return f"{format_number(lo)} {format_number(hi)}"


def _unit(unit: Any) -> Any:
    """An astropy unit from a unit or its text (astropy imported here: a value has units)."""
    from astropy import units as u

    return u.Unit(unit)


def _strings(value: Any, name: str) -> list[str]:
    texts = []
    for item in as_list(value):
        if not isinstance(item, str) or not item.strip():
            raise ParameterError(f"{name}: expected non-empty strings, got {item!r}")
        texts.append(item.strip())
    if not texts:
        raise ParameterError(f"{name}: empty list")
    return texts


def _calib(value: Any, name: str) -> list[str]:
    levels = []
    for item in as_list(value):
        if not is_int(item) or not 0 <= item <= 4:
            raise ParameterError(f"{name}: expected calibration levels 0-4, got {item!r}")
        levels.append(str(item))
    if not levels:
        raise ParameterError(f"{name}: empty list")
    return levels


#: The SIA 2.0 parameters: the standard's name and this library's keyword for each.
PARAMETERS = {
    "POS": "pos",
    "BAND": "band",
    "TIME": "time",
    "POL": "pol",
    "FOV": "field_of_view",
    "SPATRES": "spatial_resolution",
    "EXPTIME": "exptime",
    "TIMERES": "timeres",
    "SPECRP": "specrp",
    "ID": "id",
    "COLLECTION": "collection",
    "FACILITY": "facility",
    "INSTRUMENT": "instrument",
    "DPTYPE": "dptype",
    "CALIB": "calib",
    "TARGET": "target",
    "FORMAT": "format",
    "MAXREC": "maxrec",
}
#: Every keyword accepted, to the standard's name: this library's, the standard's
#: names in lower case, and pyvo's (``pyvo.dal.sia2.SIA2Query``) spellings.
KEYWORDS = {
    **{keyword: name for name, keyword in PARAMETERS.items()},
    **{name.lower(): name for name in PARAMETERS},
    "spectral_resolving_power": "SPECRP",
    "publisher_did": "ID",
    "data_type": "DPTYPE",
    "calib_level": "CALIB",
    "target_name": "TARGET",
    "res_format": "FORMAT",
}

# Units as text: astropy is imported only when a value has units (see encode_interval).
_NUMERIC = (
    ("FOV", "deg"),
    ("SPATRES", "arcsec"),
    ("EXPTIME", "s"),
    ("TIMERES", "s"),
    ("SPECRP", ""),
)
_TEXTS = ("ID", "COLLECTION", "FACILITY", "INSTRUMENT", "DPTYPE")


def build_params(*, extra: Mapping[str, Any] | None = None, **given: Any) -> Params:
    """The SIA 2.0 query parameters, in order, as (name, text) pairs.

    Keywords are those of :data:`KEYWORDS` (see :func:`build_url`); a keyword
    with an upper-case letter that is no SIA 2.0 parameter, and everything in
    ``extra``, is a service-specific parameter sent as given.
    """
    known, passed = named_parameters(given, KEYWORDS, "SIA 2.0")
    value = {key: item for key, (_, item) in known.items()}
    name = {key: keyword for key, (keyword, _) in known.items()}
    params: Params = []
    if "POS" in value:
        params.extend(("POS", encode_pos(shape)) for shape in _shapes(value["POS"]))
    if "BAND" in value:
        for item in _interval_list(value["BAND"]):
            text = encode_interval(item, name["BAND"], "m", equivalencies="spectral", lower=0.0)
            params.append(("BAND", text))
    if "TIME" in value:
        params.extend(
            ("TIME", encode_interval(item, name["TIME"], "d"))
            for item in _interval_list(value["TIME"])
        )
    if "POL" in value:
        for state in _strings(value["POL"], name["POL"]):
            if state.upper() not in POLARIZATION_STATES:
                raise ParameterError(
                    f"{name['POL']}: {state!r} is not one of {', '.join(POLARIZATION_STATES)}"
                )
            params.append(("POL", state.upper()))
    for key, unit in _NUMERIC:
        if key in value:
            params.extend(
                (key, encode_interval(item, name[key], unit, lower=0.0))
                for item in _interval_list(value[key])
            )
    for key in _TEXTS:
        if key in value:
            params.extend((key, text) for text in _strings(value[key], name[key]))
    if "CALIB" in value:
        params.extend(("CALIB", level) for level in _calib(value["CALIB"], name["CALIB"]))
    for key in ("TARGET", "FORMAT"):
        if key in value:
            params.extend((key, text) for text in _strings(value[key], name[key]))
    if "MAXREC" in value:
        maxrec = value["MAXREC"]
        if not is_int(maxrec) or maxrec < 0:
            raise ParameterError(
                f"{name['MAXREC']}: expected a non-negative integer, got {maxrec!r}"
            )
        params.append(("MAXREC", str(maxrec)))
    params.extend(extra_params(passed))
    params.extend(extra_params(list((extra or {}).items())))
    return params


def _interval_list(value: Any) -> list[Any]:
    """One interval (a value or a pair), or a list of intervals (a list of pairs)."""
    if isinstance(value, list) and value and all(isinstance(item, tuple | list) for item in value):
        return list(value)
    return [value]


def build_url(access_url: str, *, extra: Mapping[str, Any] | None = None, **params: Any) -> str:
    """The SIA 2.0 query URL for ``access_url``; see :func:`build_params`.

    ``pos``: shapes (see :func:`encode_pos`), one or a list. ``band``: spectral
    Quantity (any unit; plain numbers are metres), value or (low, high).
    ``time``: astropy Time (sent as UTC) or MJD, value or (start, end).
    ``field_of_view`` in degrees and ``spatial_resolution`` in arcseconds (as
    SIA 2.0 defines them), ``exptime`` and ``timeres`` in seconds,
    ``specrp`` dimensionless; all intervals, None for an open end. ``pol``,
    ``id``, ``collection``, ``facility``, ``instrument``, ``dptype``, ``target``,
    ``format``: a string or a list (each value sent). ``calib``: level(s) 0-4.
    ``maxrec``: 0 or more.

    The standard's names work too, in upper or lower case (``CALIB``,
    ``fov``, ``spatres``), and so do pyvo's: ``calib_level``, ``res_format``,
    ``data_type``, ``target_name``, ``publisher_did``,
    ``spectral_resolving_power``. Any other lower-case keyword is a
    ParameterError; a service-specific parameter is given in upper case
    (``RESPONSEFORMAT="votable"``) or in ``extra`` (any name), and sent as given.
    """
    return join_url(access_url, build_params(extra=extra, **params))
