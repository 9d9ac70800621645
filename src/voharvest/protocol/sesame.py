"""The CDS Sesame name resolver: a name to a query URL, its XML answer to ICRS degrees.

Sesame (``.../nph-sesame/-ox/SNV?M51``) asks Simbad, NED and VizieR in turn
and answers an XML document whose ``Resolver`` elements carry ``jradeg`` and
``jdedeg`` (J2000/ICRS degrees) when the name is known.
"""

from __future__ import annotations

import math
from urllib.parse import quote

from lxml import etree

from .._checks import http_url
from .._exceptions import FormatError, NameResolutionError, ParameterError
from ._xml import check_prolog

__all__ = ["build_url", "parse"]

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=False
)


def build_url(base: str, name: str) -> str:
    """The Sesame query URL for ``name`` (the whole query string is the name)."""
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"name: expected a non-empty object name, got {name!r}")
    if any(ord(char) < 32 for char in name):
        raise ParameterError(f"name: control characters in {name!r}")
    http_url(base, "Sesame endpoint")
    return base.rstrip("?") + "?" + quote(" ".join(name.split()), safe="")


def parse(data: bytes, name: str = "", *, url: str | None = None) -> tuple[float, float]:
    """ICRS (ra, dec) in degrees from a Sesame XML answer.

    NameResolutionError if no resolver knew the name; FormatError if the answer
    isn't Sesame XML.
    """
    text = data.lstrip()[:200].decode("utf-8", errors="replace")
    # An external DTD may be named (never loaded); internal subsets and entities are refused.
    check_prolog(data, url, what="Sesame answer")
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"unreadable Sesame answer: {exc}", snippet=text, url=url) from exc
    if etree.QName(root).localname != "Sesame":
        raise FormatError(
            f"expected Sesame XML, got <{etree.QName(root).localname}>", snippet=text, url=url
        )
    for resolver in root.iter("{*}Resolver"):
        ra_text = resolver.findtext("{*}jradeg")
        dec_text = resolver.findtext("{*}jdedeg")
        if ra_text is None or dec_text is None:
            continue
        try:
            ra, dec = float(ra_text), float(dec_text)
        except ValueError:
            continue
        if math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90:
            return ra % 360.0, dec
    raise NameResolutionError(
        f"Sesame doesn't know {name!r}" if name else "name not found", url=url
    )
