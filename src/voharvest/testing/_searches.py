"""What a farm host answers to a search: SIA v1, SIA v2 and registry queries.

Each function takes the request parameters and returns ``(HTTP status,
VOTable bytes)``; errors in the request are answered as DAL errors
(QUERY_STATUS=ERROR, status 200 for SIA as SIA 1.0 does it, 400 for TAP).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ._config import IMAGE_FORMATS
from ._registry import (
    answer_columns,
    answer_fields,
    registry_table,
    resource_values,
    sync_query,
)
from ._sky import TILE_DEG, Sky, Tile, search_tiles
from ._votables import (
    SIA1_FIELDS,
    SIA2_FIELDS,
    error_votable,
    row_xml,
    table_votable,
)

if TYPE_CHECKING:
    from ._farm import FarmHost, VOFarm

__all__ = ["Answer", "registry_answer", "sia1_answer", "sia2_answer"]

Answer = tuple[int, bytes]

# Spectral coverage by waveband (metres), for the ObsCore em_min/em_max columns.
_BANDS: Mapping[str, tuple[float, float]] = {
    "radio": (1e-2, 1.0),
    "millimeter": (1e-4, 1e-2),
    "infrared": (1e-6, 5e-6),
    "optical": (4e-7, 7e-7),
    "uv": (1e-7, 3e-7),
    "euv": (1e-8, 1e-7),
    "x-ray": (1e-10, 1e-8),
    "gamma-ray": (1e-13, 1e-11),
}


class _BadRequest(Exception):
    pass


def _multi(params: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Parameter name (upper case: DAL names are case-insensitive) to its values."""
    values: dict[str, list[str]] = {}
    for key, value in params:
        values.setdefault(key.upper(), []).append(value)
    return values


def _float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _BadRequest(f"{name}: {text!r} is not a number") from None
    if math.isnan(value):
        raise _BadRequest(f"{name}: NaN is not allowed")
    return value


def _position(ra: float, dec: float, name: str) -> tuple[float, float]:
    if not (math.isfinite(ra) and math.isfinite(dec)) or not -90.0 <= dec <= 90.0:
        raise _BadRequest(f"{name}: ({ra}, {dec}) is not a position on the sky")
    return ra % 360.0, dec


def _image_facts(sky: Sky, host: FarmHost, tile: Tile, mime: str) -> tuple[int, tuple[int, int]]:
    """(file size, (NAXIS1, NAXIS2)) of a tile's image in one format."""
    if mime == "image/fits":
        return sky.fits_facts(host.config.image_bytes, host.config.bitpix)
    return Sky.JPEG_BYTES, (Sky.JPEG_SIZE, Sky.JPEG_SIZE)  # known without rendering


# --- SIA 1.0 --------------------------------------------------------------------------


def _sia1_formats(values: list[str], offered: tuple[str, ...]) -> list[str]:
    tokens = [token.strip() for value in values for token in value.split(",") if token.strip()]
    if not tokens:
        return list(offered)
    wanted: set[str] = set()
    for token in tokens:
        upper = token.upper()
        if upper == "ALL":
            wanted.update(offered)
        elif upper == "METADATA":
            continue
        elif upper.startswith("GRAPHIC"):
            if upper in ("GRAPHIC", "GRAPHIC-ALL") or "JPEG" in upper or "JPG" in upper:
                wanted.add("image/jpeg")
        elif token.lower() in ("image/jpeg", "image/jpg"):
            wanted.add("image/jpeg")
        else:
            wanted.add(token.lower())
    return [mime for mime in offered if mime in wanted]


_ROWS_KEPT = 100_000


def _row(
    host: FarmHost,
    protocol: str,
    tile: Tile,
    mime: str,
    make: Callable[[Tile, str], tuple[object, ...]],
) -> str:
    """A tile's answer row in one format, written once per host (up to ``_ROWS_KEPT``)."""
    key = (protocol, tile.id, mime)
    row = host.rows.get(key)
    if row is None:
        if len(host.rows) >= _ROWS_KEPT:
            host.rows.clear()
        row = host.rows[key] = row_xml(make(tile, mime))
    return row


def _sia1_row(farm: VOFarm, host: FarmHost, tile: Tile, mime: str) -> tuple[object, ...]:
    size, naxis = _image_facts(farm.sky, host, tile, mime)
    scale = TILE_DEG / max(naxis)
    return (
        f"VOFarm tile {tile.id} ({IMAGE_FORMATS[mime]})",
        tile.ra,
        tile.dec,
        2,
        naxis,
        (scale, scale),
        mime,
        tile.mjd,
        f"VOFarm host {host.index}",
        host.config.waveband,
        size,
        host.image_url(tile, mime),
    )


def sia1_answer(
    farm: VOFarm,
    host: FarmHost,
    query: Iterable[tuple[str, str]],
    *,
    tiles: Callable[[float, float, float, int], list[Tile]] = search_tiles,
) -> Answer:
    """SIA 1.0; ``tiles(ra, dec, radius, limit)`` chooses the tiles (a footprint's, for a VO)."""
    params = _multi(query)
    try:
        formats = params.get("FORMAT", [])
        preset = host.config.sia1_format_preset
        if preset is not None and any(value.lower() != preset for value in formats):
            others = ", ".join(v for v in formats if v.lower() != preset)
            raise _BadRequest(f"FORMAT {others} is not supported: this service serves {preset}")
        pos = params.get("POS", [])
        if len(pos) != 1:
            raise _BadRequest("POS is required, once, as 'ra,dec' in degrees (ICRS)")
        parts = pos[0].split(",")
        if len(parts) != 2:
            raise _BadRequest(f"POS: {pos[0]!r} is not 'ra,dec'")
        ra, dec = _position(_float(parts[0], "POS"), _float(parts[1], "POS"), "POS")
        sizes = [_float(s, "SIZE") for s in params.get("SIZE", ["0"])[0].split(",")]
        if not 1 <= len(sizes) <= 2 or any(not 0 <= s <= 360 for s in sizes):
            raise _BadRequest(f"SIZE: {params['SIZE'][0]!r} is not one or two angles in [0, 360]")
    except _BadRequest as exc:
        return 200, error_votable(str(exc))
    found = tiles(ra, dec, max(sizes) / 2, host.config.images_per_search)
    rows = [
        _row(host, "sia1", tile, mime, lambda t, m: _sia1_row(farm, host, t, m))
        for tile in found
        for mime in _sia1_formats(formats, host.config.formats)
    ]
    return 200, table_votable(SIA1_FIELDS, rows, description=host.title)


# --- SIA 2.0 --------------------------------------------------------------------------


def _sia2_shape(text: str) -> tuple[float, float, float]:
    """Centre and radius (degrees) of a DALI CIRCLE, RANGE or POLYGON."""
    words = text.split()
    if not words:
        raise _BadRequest("POS: empty")
    kind = words[0].upper()
    numbers = [_float(word, "POS") for word in words[1:]]
    if kind == "CIRCLE" and len(numbers) == 3:
        ra, dec = _position(numbers[0], numbers[1], "POS")
        if not 0 <= numbers[2] <= 180:
            raise _BadRequest(f"POS: circle radius {numbers[2]} is outside [0, 180]")
        return ra, dec, numbers[2]
    if kind == "RANGE" and len(numbers) == 4:
        ra1, ra2, dec1, dec2 = (
            min(max(numbers[0], 0.0), 360.0),
            min(max(numbers[1], 0.0), 360.0),
            min(max(numbers[2], -90.0), 90.0),
            min(max(numbers[3], -90.0), 90.0),
        )
        if ra1 > ra2 or dec1 > dec2:
            raise _BadRequest(f"POS: {text!r} is an empty range")
        dec = (dec1 + dec2) / 2
        half_ra = (ra2 - ra1) / 2 * math.cos(math.radians(dec))
        return (ra1 + ra2) / 2, dec, math.hypot(half_ra, (dec2 - dec1) / 2)
    if kind == "POLYGON" and len(numbers) >= 6 and len(numbers) % 2 == 0:
        vertices = [_position(numbers[i], numbers[i + 1], "POS") for i in range(0, len(numbers), 2)]
        x = sum(math.cos(math.radians(d)) * math.cos(math.radians(r)) for r, d in vertices)
        y = sum(math.cos(math.radians(d)) * math.sin(math.radians(r)) for r, d in vertices)
        z = sum(math.sin(math.radians(d)) for _, d in vertices)
        ra = math.degrees(math.atan2(y, x)) % 360.0
        dec = math.degrees(math.atan2(z, math.hypot(x, y)))
        radius = max(_distance(ra, dec, r, d) for r, d in vertices)
        return ra, dec, radius
    raise _BadRequest(f"POS: {text!r} is not CIRCLE ra dec r, RANGE or POLYGON")


def _distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    a = math.radians
    cos = math.sin(a(dec1)) * math.sin(a(dec2)) + math.cos(a(dec1)) * math.cos(a(dec2)) * math.cos(
        a(ra1 - ra2)
    )
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def _sia2_row(farm: VOFarm, host: FarmHost, tile: Tile, mime: str) -> tuple[object, ...]:
    em_min, em_max = _BANDS.get(host.config.waveband.lower(), _BANDS["optical"])
    size, naxis = _image_facts(farm.sky, host, tile, mime)
    half = TILE_DEG / 2
    corners = [
        (tile.ra - half, tile.dec - half),
        (tile.ra + half, tile.dec - half),
        (tile.ra + half, tile.dec + half),
        (tile.ra - half, tile.dec + half),
    ]
    extension = IMAGE_FORMATS[mime]
    return (
        "image",
        2,
        "VOFarm",
        tile.id,
        f"VOFarm tile {tile.id} ({extension})",
        f"{host.ivoid}?{tile.id}/{extension}",
        host.image_url(tile, mime),
        mime,
        math.ceil(size / 1000),
        f"tile {tile.id}",
        tile.ra,
        tile.dec,
        TILE_DEG * math.sqrt(2),
        "POLYGON ICRS " + " ".join(f"{r % 360.0!r} {d!r}" for r, d in corners),
        TILE_DEG / max(naxis) * 3600.0,
        tile.mjd,
        tile.mjd + 0.01,
        em_min,
        em_max,
        "phot.count",
        "VOFarm",
        f"host{host.index}",
    )


def _sia2_request(
    positions: list[str], params: Mapping[str, list[str]]
) -> tuple[list[tuple[float, float, float]], int | None]:
    """The POS shapes and the MAXREC of an SIA 2.0 query; `_BadRequest` when one is wrong."""
    shapes = [_sia2_shape(text) for text in positions]
    if not shapes:
        raise _BadRequest("VOFarm needs a POS (CIRCLE, RANGE or POLYGON)")
    if "MAXREC" not in params:
        return shapes, None
    text = params["MAXREC"][0].strip()
    if not text.isdigit():
        raise _BadRequest(f"MAXREC: {text!r} is not a non-negative integer")
    return shapes, int(text)


def _sia2_table(
    farm: VOFarm,
    host: FarmHost,
    tiles: Iterable[Tile],
    params: Mapping[str, list[str]],
    maxrec: int | None,
) -> Answer:
    """The SIA 2.0 answer: a row per tile and kept FORMAT, cut at MAXREC (with overflow)."""
    wanted = {value.strip().lower() for value in params.get("FORMAT", [])}
    formats = [f for f in host.config.formats if not wanted or f in wanted]
    rows = [
        _row(host, "sia2", tile, mime, lambda t, m: _sia2_row(farm, host, t, m))
        for tile in tiles
        for mime in formats
    ]
    overflow = maxrec is not None and len(rows) > maxrec
    if maxrec is not None:
        rows = rows[:maxrec]
    return 200, table_votable(SIA2_FIELDS, rows, overflow=overflow, description=host.title)


def sia2_answer(farm: VOFarm, host: FarmHost, query: Iterable[tuple[str, str]]) -> Answer:
    params = _multi(query)
    limit = host.config.images_per_search
    try:
        shapes, maxrec = _sia2_request(params.get("POS", []), params)
    except _BadRequest as exc:
        return 200, error_votable(str(exc))
    tiles: dict[str, Tile] = {}
    for ra, dec, radius in shapes:
        for tile in search_tiles(ra, dec, radius, limit):
            tiles.setdefault(tile.id, tile)
    return _sia2_table(farm, host, list(tiles.values())[:limit], params, maxrec)


# --- registry (RegTAP rows) -----------------------------------------------------------

_LITERAL = r"'((?:[^']|'')*)'"
_WAVEBAND = re.compile(r"ivo_hashlist_has\s*\(\s*waveband\s*,\s*" + _LITERAL, re.IGNORECASE)
_HASWORD = re.compile(r"ivo_hasword\s*\(\s*res_\w+\s*,\s*" + _LITERAL, re.IGNORECASE)
_IVOID_EQ = re.compile(r"\bivoid\s*=\s*" + _LITERAL, re.IGNORECASE)
_IVOID_IN = re.compile(r"\bivoid\s+IN\s*\(\s*('(?:[^']|'')*'(?:\s*,\s*'(?:[^']|'')*')*)\s*\)", re.I)
_STANDARD_ID = re.compile(r"\bstandard_id\s*(?:in\b|like\b|=)", re.IGNORECASE)
_SIA1_ID = "'ivo://ivoa.net/std/sia'"
_SIA2_ID = "ivo://ivoa.net/std/sia#query-2."


def _literals(pattern: re.Pattern[str], text: str) -> list[str]:
    return [match.group(1).replace("''", "'") for match in pattern.finditer(text)]


def _interfaces(host: FarmHost, query: str) -> list[tuple[str, str, str, str, str, str]]:
    """The host's interfaces a query asks for (all when it names no standard id)."""
    interfaces = [
        ("sia", "ivo://ivoa.net/std/sia", "vs:paramhttp", "std", "1.0", host.sia1_url),
        ("sia2", "ivo://ivoa.net/std/sia#query-2.0", "vs:paramhttp", "std", "2.0", host.sia2_url),
        ("tap", "ivo://ivoa.net/std/tap#aux", "vs:paramhttp", "std", "1.1", host.tap_url),
    ]
    text = query.lower()
    if not _STANDARD_ID.search(text):  # no constraint on the capability: all of them
        return interfaces
    wanted = {
        "sia": _SIA1_ID in text,
        "sia2": _SIA2_ID in text,
        "tap": "ivo://ivoa.net/std/tap#aux" in text,
    }
    return [interface for interface in interfaces if wanted[interface[0]]]


def _resource_values(host: FarmHost, query: str) -> dict[str, object] | None:
    """The host's columns with the interfaces the query asks for (None: it asks for none)."""
    interfaces = _interfaces(host, query)
    if not interfaces:
        return None
    descriptions = {
        "sia": f"SIA 1.0 images of VOFarm host {host.index}",
        "sia2": f"SIA 2.0 (ObsCore) images of VOFarm host {host.index}",
        "tap": f"TAP endpoint of VOFarm host {host.index}",
    }
    band = host.config.waveband.lower()
    own = {
        "ivoid": host.ivoid,
        "res_type": "vs:catalogservice",
        "short_name": f"VOFarm{host.index}",
        "res_title": host.title,
        "res_description": f"Simulated {band} images of a synthetic sky, served by VOFarm "
        f"host {host.index} at {host.base_url} (SIA 1.0, SIA 2.0).",
        "reference_url": host.base_url + "/",
        "creator_seq": "VOFarm",
        "waveband": band,
    }
    rows = [
        (std, intf_type, role, version, url, descriptions[kind])
        for kind, std, intf_type, role, version, url in interfaces
    ]
    return resource_values(own, rows)


def _matches(host: FarmHost, query: str) -> bool:
    bands = {band.strip().lower() for band in _literals(_WAVEBAND, query)}
    if bands and host.config.waveband.lower() not in bands:
        return False
    ivoids = set(_literals(_IVOID_EQ, query))
    for match in _IVOID_IN.finditer(query):
        ivoids.update(_literals(re.compile(_LITERAL), match.group(1)))
    if ivoids and host.ivoid not in {i.lower() for i in ivoids}:
        return False
    text = " ".join(
        (host.title, f"Simulated {host.config.waveband} images VOFarm survey synthetic sky")
    )
    return all(
        re.search(r"\b" + re.escape(word) + r"\b", text, re.IGNORECASE)
        for word in dict.fromkeys(_literals(_HASWORD, query))
    )


def registry_answer(farm: VOFarm, params: Mapping[str, str]) -> Answer:
    """RegTAP rows for the farm's own hosts, filtered as the ADQL query asks.

    Not an ADQL engine: it recognises the constraints voharvest and pyvo write
    (standard ids, waveband, keywords, ivoid, TOP) and ignores the rest.
    """
    query, refused = sync_query(params)
    if refused is not None:
        return refused
    names = answer_columns(query)
    rows = []
    for host in farm.hosts:
        values = _resource_values(host, query) if _matches(host, query) else None
        if values is not None:
            rows.append([values.get(name) for name in names])
    return registry_table(rows, query, params, fields=answer_fields(names))
