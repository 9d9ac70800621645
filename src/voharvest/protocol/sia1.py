"""Simple Image Access 1.0: search parameters to a query URL.

POS and SIZE in ICRS degrees, FORMAT, INTERSECT and VERB as the SIA 1.0
recommendation defines them. A parameter preset in the service's access URL
(some services publish ``...?FORMAT=image/fits&``) is left as the service set it.
"""

from __future__ import annotations

import re
from typing import Any

from .._exceptions import ParameterError
from ._encoding import (
    Params,
    as_list,
    format_number,
    is_quantity,
    join_url,
    position_degrees,
    to_degrees,
)

__all__ = [
    "FORMAT_KEYWORDS",
    "INTERSECT_VALUES",
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


def _size(size: Any) -> str:
    if is_quantity(size) and not size.isscalar:
        items = list(size)
    elif isinstance(size, tuple | list):
        items = list(size)
    else:
        items = [size]
    if len(items) not in (1, 2):
        raise ParameterError(f"size: expected one or two angles, got {size!r}")
    values = []
    for item in items:
        degrees = to_degrees(item, "size")
        if not 0.0 <= degrees <= 360.0:
            raise ParameterError(f"size: {degrees} deg is outside [0, 360]")
        values.append(format_number(degrees))
    return ",".join(values)


def build_params(
    *,
    pos: Any,
    size: Any,
    format: Any = None,
    intersect: str | None = None,
    verbosity: int | None = None,
    **extra: Any,
) -> Params:
    """The SIA 1.0 query parameters, in order, as (name, text) pairs."""
    ra, dec = position_degrees(pos)
    params: Params = [("POS", f"{format_number(ra)},{format_number(dec)}"), ("SIZE", _size(size))]
    if format is not None:
        params.append(("FORMAT", encode_format(format)))
    if intersect is not None:
        if not isinstance(intersect, str) or intersect.strip().upper() not in INTERSECT_VALUES:
            raise ParameterError(
                f"intersect: {intersect!r} is not one of {', '.join(INTERSECT_VALUES)}"
            )
        params.append(("INTERSECT", intersect.strip().upper()))
    if verbosity is not None:
        if isinstance(verbosity, bool) or verbosity not in (0, 1, 2, 3):
            raise ParameterError(f"verbosity: expected 0, 1, 2 or 3, got {verbosity!r}")
        params.append(("VERB", str(int(verbosity))))  # 1.0 and numpy ints as "1"
    params.extend(extra_params(extra))
    return params


def extra_params(extra: dict[str, Any]) -> Params:
    """Service-specific parameters: a list sends the name once per value."""
    params: Params = []
    for name, value in extra.items():
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


def build_url(
    access_url: str,
    *,
    pos: Any,
    size: Any,
    format: Any = None,
    intersect: str | None = None,
    verbosity: int | None = None,
    **extra: Any,
) -> str:
    """The SIA 1.0 query URL for ``access_url``.

    ``pos``: a SkyCoord (any frame, converted to ICRS) or (ra, dec) degrees.
    ``size``: one or two angles (Quantity or degrees). ``format``: None (not
    sent), ALL / GRAPHIC / METADATA / GRAPHIC-xxx, a MIME type, or a list.
    ``intersect``: COVERS, ENCLOSED, CENTER or OVERLAPS. ``verbosity``: VERB 0-3.
    Further keyword arguments are sent as they are.
    """
    params = build_params(
        pos=pos, size=size, format=format, intersect=intersect, verbosity=verbosity, **extra
    )
    return join_url(access_url, params)
