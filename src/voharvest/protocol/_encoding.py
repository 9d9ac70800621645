"""Shared encoding helpers: numbers on the wire, ADQL literals, access URLs.

Everything here is pure and raises :class:`~voharvest.ParameterError` on bad
input, naming the parameter at fault. Numbers, angles and positions are read by
:mod:`voharvest._checks` (the library's one reader of each), named here too for
the protocol modules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlunsplit

from .._checks import (
    MAX_ANGLE,
    angle,
    http_parts,
    is_quantity,
    is_skycoord,
    is_time,
    position_degrees,
    to_degrees,
    to_float,
)
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


def format_number(value: float) -> str:
    """The shortest text that reads back as ``value``; infinities as DALI's ``+Inf``/``-Inf``."""
    if math.isnan(value):
        raise ParameterError("NaN can't be sent")
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


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
    parts = http_parts(access_url.strip(), "access URL")
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
