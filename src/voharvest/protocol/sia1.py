"""Simple Image Access 1.0: search parameters to a query URL.

POS and SIZE in ICRS degrees, FORMAT, INTERSECT and VERB as the SIA 1.0
recommendation defines them. A parameter preset in the service's access URL
(some services publish ``...?FORMAT=image/fits&``) is left as the service set it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .._exceptions import ParameterError
from ._encoding import (
    Params,
    angle,
    as_list,
    format_number,
    is_quantity,
    join_url,
    named_parameters,
    position_degrees,
)

__all__ = [
    "FORMAT_KEYWORDS",
    "INTERSECT_VALUES",
    "KEYWORDS",
    "build_params",
    "build_url",
    "encode_format",
    "extra_params",
]

#: FORMAT values with a special meaning in SIA 1.0 (besides MIME types).
FORMAT_KEYWORDS = ("ALL", "GRAPHIC", "METADATA", "GRAPHIC-ALL")
#: Valid INTERSECT values.
INTERSECT_VALUES = ("COVERS", "ENCLOSED", "CENTER", "OVERLAPS")

_MIME = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+\-\"]+)*$")
_GRAPHIC_LIST = re.compile(r"^GRAPHIC-[A-Za-z0-9.+-]+(,[A-Za-z0-9.+-]+)*$", re.IGNORECASE)


def encode_format(format: Any) -> str:
    """FORMAT text: keywords (case-insensitive), ``GRAPHIC-jpeg,png``, or MIME types."""
    values = []
    for item in as_list(format):
        if not isinstance(item, str) or not item.strip():
            raise ParameterError(f"format: expected a MIME type or keyword, got {item!r}")
        text = item.strip()
        if text.upper() in FORMAT_KEYWORDS:
            values.append(text.upper())
        elif _GRAPHIC_LIST.match(text):
            values.append("GRAPHIC-" + text[len("GRAPHIC-") :])
        elif _MIME.match(text):
            values.append(text)
        else:
            raise ParameterError(
                f"format: {text!r} is neither a MIME type (image/fits) nor one of "
                f"{', '.join(FORMAT_KEYWORDS)} or GRAPHIC-<formats>"
            )
    if not values:
        raise ParameterError("format: empty list")
    return ",".join(values)


def _size(size: Any, name: str = "size") -> str:
    if is_quantity(size) and not size.isscalar:
        items = list(size)
    elif isinstance(size, tuple | list):
        items = list(size)
    else:
        items = [size]
    if len(items) not in (1, 2):
        raise ParameterError(f"{name}: expected one or two angles, got {size!r}")
    return ",".join(format_number(angle(item, name)) for item in items)


#: Every keyword accepted, to the SIA 1.0 parameter name (pyvo's ``SIAQuery`` uses
#: the same keywords: pos, size, format, intersect, verbosity).
KEYWORDS = {
    "pos": "POS",
    "size": "SIZE",
    "format": "FORMAT",
    "intersect": "INTERSECT",
    "verbosity": "VERB",
    "verb": "VERB",
}


def build_params(*, extra: Mapping[str, Any] | None = None, **given: Any) -> Params:
    """The SIA 1.0 query parameters, in order, as (name, text) pairs (see :func:`build_url`)."""
    known, passed = named_parameters(given, KEYWORDS, "SIA 1.0")
    for key in ("POS", "SIZE"):
        if key not in known:
            raise ParameterError(f"{key.lower()}: an SIA 1.0 search needs {key}")
    value = {key: item for key, (_, item) in known.items()}
    ra, dec = position_degrees(value["POS"], known["POS"][0])
    params: Params = [
        ("POS", f"{format_number(ra)},{format_number(dec)}"),
        ("SIZE", _size(value["SIZE"], known["SIZE"][0])),
    ]
    if "FORMAT" in value:
        params.append(("FORMAT", encode_format(value["FORMAT"])))
    if "INTERSECT" in value:
        intersect = value["INTERSECT"]
        if not isinstance(intersect, str) or intersect.strip().upper() not in INTERSECT_VALUES:
            raise ParameterError(
                f"{known['INTERSECT'][0]}: {intersect!r} is not one of "
                f"{', '.join(INTERSECT_VALUES)}"
            )
        params.append(("INTERSECT", intersect.strip().upper()))
    if "VERB" in value:
        verbosity = value["VERB"]
        if isinstance(verbosity, bool) or verbosity not in (0, 1, 2, 3):
            raise ParameterError(f"{known['VERB'][0]}: expected 0, 1, 2 or 3, got {verbosity!r}")
        params.append(("VERB", str(int(verbosity))))  # 1.0 and numpy ints as "1"
    params.extend(extra_params(passed))
    params.extend(extra_params(list((extra or {}).items())))
    return params


def extra_params(extra: Iterable[tuple[str, Any]]) -> Params:
    """Service-specific parameters, sent as given: a list sends the name once per value."""
    params: Params = []
    for name, value in extra:
        for item in as_list(value):
            if item is None:
                continue
            if isinstance(item, bool):
                text = "true" if item else "false"
            elif isinstance(item, float):
                text = format_number(item)
            else:
                text = str(item)
            params.append((name, text))
    return params


def build_url(access_url: str, *, extra: Mapping[str, Any] | None = None, **params: Any) -> str:
    """The SIA 1.0 query URL for ``access_url``.

    ``pos``: a SkyCoord (any frame, converted to ICRS) or (ra, dec) degrees.
    ``size``: one or two angles (degrees, a Quantity or text such as
    ``"2arcmin"``; see :func:`~._encoding.angle`). ``format``: None (not sent),
    ALL / GRAPHIC / METADATA / GRAPHIC-xxx, a MIME type, or a list.
    ``intersect``: COVERS, ENCLOSED, CENTER or OVERLAPS. ``verbosity`` (or
    ``verb``): VERB 0-3. The standard's upper-case names work too. Any other
    lower-case keyword is a ParameterError; a service-specific parameter is
    given in upper case (``NAXIS="300,300"``) or in ``extra`` (any name, such as
    SkyView's ``{"survey": "dss"}``), and sent as given.
    """
    return join_url(access_url, build_params(extra=extra, **params))
