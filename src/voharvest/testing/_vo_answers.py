"""What the sites of a :class:`~voharvest.testing.FarmVO` answer: ObsCore over TAP, SIA, VOSI.

Every answer honours the site's footprint: a search finds the tiles
:func:`~voharvest.testing.search_tiles` would, less those outside the
footprint (:meth:`Footprint.tiles`), so nothing comes from outside the
coverage the registry publishes.

- ObsCore over TAP sync (``/tap/sync`` with a query on ``ivoa.obscore``), not an
  ADQL engine either: it recognises the single-position form pyvo.discover
  writes (``CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', ra, dec, r)) OR
  INTERSECTS(CIRCLE(ra, dec, r), s_region)``: the tiles around that circle) and
  the batch form, an upload of targets (``UPLOAD=targets,param:targets``, a
  VOTable with ``id``, ``ra``, ``dec``, ``radius``) joined with
  ``CIRCLE('ICRS', t.ra, t.dec, t.radius)``: the tiles around each target, each
  row prefixed with the upload columns the SELECT names (``t.id``). A
  ``dataproduct_type`` other than ``'image'`` finds nothing; ``MAXREC`` cuts
  with a trailing OVERFLOW. A site with ``uploads=False`` refuses any upload
  with 400 and an error VOTable.
- SIA 2.0 with several ``POS`` values: OR-ed, as the standard says; each
  position finds its own tiles (at most ``images_per_search`` each), every
  record once. A site with ``multi_pos=False`` refuses two or more with 400.
- SIA 1.0 as the plain farm's, within the footprint.
- ``/tap/capabilities`` and ``/tap/tables``: what pyvo reads before a registry
  search with a spatial constraint (the MOC ADQL feature, ``rr.stc_spatial``)
  and before an upload.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ._searches import (
    Answer,
    _BadRequest,
    _multi,
    _row,
    _sia2_row,
    _sia2_shape,
    sia1_answer,
)
from ._sky import Tile
from ._votables import SIA2_FIELDS, Field, error_votable, table_votable

if TYPE_CHECKING:
    from ._farm import FarmHost, VOFarm
    from ._vo import Site

__all__ = [
    "parse_uploads",
    "vo_obscore_answer",
    "vo_sia1_answer",
    "vo_sia2_answer",
    "vo_tap_answer",
    "vo_tap_capabilities",
    "vo_tap_resources",
    "vo_tap_tables",
]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CIRCLE = re.compile(
    r"CIRCLE\s*\(\s*(?:'[^']*'\s*,\s*)?(" + _NUMBER + r")\s*,\s*(" + _NUMBER + r")\s*,\s*("
    r"" + _NUMBER + r")\s*\)",
    re.IGNORECASE,
)
_UPLOAD_CIRCLE = re.compile(
    r"CIRCLE\s*\(\s*(?:'[^']*'\s*,\s*)?(\w+)\.(\w+)\s*,\s*(\w+)\.(\w+)\s*,\s*(\w+)\.(\w+)\s*\)",
    re.IGNORECASE,
)
_UPLOAD_TABLE = re.compile(r"\bTAP_UPLOAD\.(\w+)(?:\s+AS)?\s+(\w+)", re.IGNORECASE)
_PRODUCT = re.compile(r"dataproduct_type\s*=\s*'([^']*)'", re.IGNORECASE)


def _site(farm: VOFarm, host: FarmHost) -> Site | None:
    return farm.vo.sites.get(host.index) if farm.vo is not None else None


def _no_service(host: FarmHost, what: str) -> Answer:
    return 404, error_votable(f"VOFarm site {host.index} serves no {what}")


# --- uploads ------------------------------------------------------------------------------------


def parse_uploads(
    upload: str | None, files: Mapping[str, bytes]
) -> dict[str, dict[str, list[object]]]:
    """``UPLOAD=name,param:part;...`` and the posted parts: table name -> column -> values.

    Raises ValueError for what can't be read (a URL upload, a missing part, not a VOTable).
    """
    from astropy.io.votable import parse_single_table

    tables: dict[str, dict[str, list[object]]] = {}
    if not upload:
        return tables
    for item in upload.split(";"):
        name, comma, source = item.strip().partition(",")
        if not comma or not name.strip():
            raise ValueError(f"UPLOAD: {item!r} is not name,param:part")
        if not source.strip().startswith("param:"):
            raise ValueError(f"UPLOAD: only inline uploads (param:) are supported, got {source!r}")
        part = source.strip()[len("param:") :]
        if part not in files:
            raise ValueError(f"UPLOAD: no posted part named {part!r}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = parse_single_table(io.BytesIO(files[part])).to_table()
        except Exception as exc:
            raise ValueError(f"UPLOAD {name}: not a VOTable ({exc})") from None
        tables[name.strip().lower()] = {
            column.lower(): [_plain(v) for v in table[column].tolist()] for column in table.colnames
        }
    return tables


def _plain(value: object) -> object:
    item = getattr(value, "item", None)
    value = item() if callable(item) else value
    return value.decode() if isinstance(value, bytes) else value


# --- TAP: the registry, or a site's ObsCore table ------------------------------------------


def vo_tap_answer(
    farm: VOFarm, host: FarmHost, params: Mapping[str, str], files: Mapping[str, bytes]
) -> Answer:
    """A TAP sync request: RegTAP (a query on ``rr.*``, any host) or ObsCore (its site's)."""
    from ._vo_registry import vo_registry_answer

    request = params.get("REQUEST", "doQuery")
    if request.lower() != "doquery":
        return 400, error_votable(f"REQUEST={request} is not supported; use doQuery")
    lang = params.get("LANG", "ADQL")
    if not lang.upper().startswith("ADQL"):
        return 400, error_votable(f"LANG={lang} is not supported; use ADQL")
    query = params.get("QUERY", "")
    if not query.strip():
        return 400, error_votable("QUERY is missing")
    if re.search(r"\bFROM\s+rr\.", query, re.IGNORECASE):
        try:
            tables = parse_uploads(params.get("UPLOAD"), files)
        except ValueError as exc:
            return 400, error_votable(str(exc))
        uploads = {
            name: {column: [str(v) for v in values] for column, values in table.items()}
            for name, table in tables.items()
        }
        return vo_registry_answer(farm, params, uploads)
    return vo_obscore_answer(farm, host, params, files)


def vo_tap_resources(host: FarmHost, which: str) -> bytes:
    """The VOSI document ``which`` (``capabilities`` or ``tables``) of a site's TAP endpoint."""
    return vo_tap_capabilities(host) if which == "capabilities" else vo_tap_tables(host)


# --- ObsCore over TAP -------------------------------------------------------------------------


def _obscore_rows(
    farm: VOFarm, host: FarmHost, site: Site, ra: float, dec: float, radius: float
) -> list[str]:
    limit = host.config.images_per_search
    tiles: list[Tile] = site.footprint.tiles(ra % 360.0, dec, radius, limit)
    return [
        _row(host, "sia2", tile, mime, lambda t, m: _sia2_row(farm, host, t, m))
        for tile in tiles
        for mime in host.config.formats
    ]


def _with(prefix: list[object], row: str) -> str:
    """A written row ``<TR>...`` with cells for ``prefix`` before its own."""
    cells = "".join(table_votable_cell(value) for value in prefix)
    return "<TR>" + cells + row[len("<TR>") :]


def table_votable_cell(value: object) -> str:
    from ._votables import row_xml

    return row_xml([value])[len("<TR>") : -len("</TR>\n")]


def vo_obscore_answer(
    farm: VOFarm, host: FarmHost, params: Mapping[str, str], files: Mapping[str, bytes]
) -> Answer:
    """(status, VOTable) for an ObsCore query on a site's TAP endpoint."""
    site = _site(farm, host)
    if site is None or farm.vo is None or farm.vo.offering(host.index, "obscore") is None:
        return _no_service(host, "ObsCore table")
    query = params.get("QUERY", "")
    upload = params.get("UPLOAD")
    uploaded = "tap_upload." in query.lower()
    if (upload or uploaded) and not site.uploads:
        return 400, error_votable("this service does not accept table uploads (UPLOAD)")
    product = _PRODUCT.search(query)
    wanted = product is None or product.group(1).lower() == "image"
    try:
        tables = parse_uploads(upload, files)
    except ValueError as exc:
        return 400, error_votable(str(exc))
    fields: list[Field] = list(SIA2_FIELDS)
    rows: list[str] = []
    if uploaded:
        joined = _UPLOAD_TABLE.search(query)
        circle = _UPLOAD_CIRCLE.search(query)
        if joined is None or circle is None:
            return 400, error_votable(
                "VOFarm's ObsCore joins an upload on CIRCLE('ICRS', t.ra, t.dec, t.radius)"
            )
        name, alias = joined.group(1).lower(), joined.group(2).lower()
        if name not in tables:
            return 400, error_votable(f"TAP_UPLOAD.{name} was not uploaded")
        table = tables[name]
        ra_col, dec_col, radius_col = (circle.group(i).lower() for i in (2, 4, 6))
        missing = [c for c in (ra_col, dec_col, radius_col) if c not in table]
        if missing:
            return 400, error_votable(f"TAP_UPLOAD.{name} has no column {missing[0]}")
        # The upload's columns the SELECT names (t.id, or t.id AS name), first in each row.
        named = re.findall(
            r"\b" + re.escape(alias) + r"\.(\w+)(?:\s+AS\s+(\w+))?", _select(query), re.I
        )
        chosen = [(c.lower(), a or c) for c, a in named if c.lower() in table]
        prefix = [column for column, _ in chosen]
        fields = [Field(name, _datatype(table[column])) for column, name in chosen] + fields
        for index in range(len(table[ra_col])):
            values = [table[column][index] for column in prefix]
            ra, dec, radius = (float(str(table[c][index])) for c in (ra_col, dec_col, radius_col))
            if wanted:
                found = _obscore_rows(farm, host, site, ra, dec, radius)
                rows += [_with(values, row) for row in found]
    else:
        circle = _CIRCLE.search(query)
        if circle is None:
            return 400, error_votable("VOFarm's ObsCore needs a CIRCLE('ICRS', ra, dec, radius)")
        ra, dec, radius = (float(circle.group(i)) for i in (1, 2, 3))
        if wanted:
            rows = _obscore_rows(farm, host, site, ra, dec, radius)
    maxrec = params.get("MAXREC", "").strip()
    overflow = False
    if maxrec.isdigit() and len(rows) > int(maxrec):
        rows, overflow = rows[: int(maxrec)], True
    return 200, table_votable(fields, rows, overflow=overflow, description=host.title)


def _select(query: str) -> str:
    match = re.match(r"\s*SELECT\s+(.*?)\bFROM\b", query, re.IGNORECASE | re.DOTALL)
    return match.group(1) if match else ""


def _datatype(values: list[object]) -> str:
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "long"
    if values and all(isinstance(v, float) for v in values):
        return "double"
    return "char"


# --- SIA ------------------------------------------------------------------------------------------


def vo_sia2_answer(farm: VOFarm, host: FarmHost, query: Iterable[tuple[str, str]]) -> Answer:
    """SIA 2.0 within the footprint; several POS are OR-ed (or refused, ``multi_pos=False``)."""
    site = _site(farm, host)
    if site is None or farm.vo is None or farm.vo.offering(host.index, "sia2") is None:
        return _no_service(host, "SIA 2.0 service")
    params = _multi(query)
    positions = params.get("POS", [])
    if len(positions) > 1 and not site.multi_pos:
        return 400, error_votable("this service accepts one POS per request")
    try:
        shapes = [_sia2_shape(text) for text in positions]
        if not shapes:
            raise _BadRequest("VOFarm needs a POS (CIRCLE, RANGE or POLYGON)")
        maxrec: int | None = None
        if "MAXREC" in params:
            text = params["MAXREC"][0].strip()
            if not text.isdigit():
                raise _BadRequest(f"MAXREC: {text!r} is not a non-negative integer")
            maxrec = int(text)
    except _BadRequest as exc:
        return 200, error_votable(str(exc))
    tiles: dict[str, Tile] = {}
    for ra, dec, radius in shapes:
        for tile in site.footprint.tiles(ra, dec, radius, host.config.images_per_search):
            tiles.setdefault(tile.id, tile)
    chosen = {value.strip().lower() for value in params.get("FORMAT", [])}
    formats = [f for f in host.config.formats if not chosen or f in chosen]
    rows = [
        _row(host, "sia2", tile, mime, lambda t, m: _sia2_row(farm, host, t, m))
        for tile in tiles.values()
        for mime in formats
    ]
    overflow = maxrec is not None and len(rows) > maxrec
    if maxrec is not None:
        rows = rows[:maxrec]
    return 200, table_votable(SIA2_FIELDS, rows, overflow=overflow, description=host.title)


def vo_sia1_answer(farm: VOFarm, host: FarmHost, query: Iterable[tuple[str, str]]) -> Answer:
    """SIA 1.0 within the footprint."""
    site = _site(farm, host)
    if site is None or farm.vo is None or farm.vo.offering(host.index, "sia1") is None:
        return _no_service(host, "SIA 1.0 service")
    return sia1_answer(farm, host, query, tiles=site.footprint.tiles)


# --- VOSI ---------------------------------------------------------------------------------


def vo_tap_capabilities(host: FarmHost) -> bytes:
    """TAP capabilities: ADQL 2.0 with the MOC function and geometry, inline uploads."""
    features = "".join(
        f"<feature><form>{form}</form></feature>"
        for form in ("CONTAINS", "INTERSECTS", "POINT", "CIRCLE", "POLYGON")
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">'
        '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
        '<interface xsi:type="vs:ParamHTTP" role="std" version="1.1">'
        f'<accessURL use="base">{host.tap_url}</accessURL></interface>'
        '<language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0'
        "</version><description>ADQL 2.0</description>"
        '<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">'
        f"{features}</languageFeatures>"
        '<languageFeatures type="ivo://org.gavo.dc/std/exts#extra-adql-keywords">'
        "<feature><form>MOC</form><description>MOC(order, geometry)</description></feature>"
        "</languageFeatures></language>"
        "<outputFormat><mime>application/x-votable+xml</mime></outputFormat>"
        '<uploadMethod ivo-id="ivo://ivoa.net/std/TAPRegExt#upload-inline"/>'
        "<retentionPeriod><default>86400</default></retentionPeriod>"
        "</capability>"
        '<capability standardID="ivo://ivoa.net/std/VOSI#capabilities">'
        '<interface xsi:type="vs:ParamHTTP">'
        f'<accessURL use="full">{host.tap_url}/capabilities</accessURL></interface>'
        "</capability>"
        "</vosi:capabilities>"
    ).encode()


_TABLES = {
    "rr": (
        "rr.resource",
        "rr.capability",
        "rr.interface",
        "rr.res_table",
        "rr.res_detail",
        "rr.relationship",
        "rr.stc_spatial",
    ),
    "ivoa": ("ivoa.obscore",),
}


def vo_tap_tables(host: FarmHost) -> bytes:
    """VOSI tables: the RegTAP tables and ivoa.obscore (names only, as a VOSI tables list)."""
    schemas = "".join(
        f"<schema><name>{schema}</name>"
        + "".join(f'<table type="table"><name>{name}</name></table>' for name in names)
        + "</schema>"
        for schema, names in _TABLES.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">'
        f"{schemas}</vosi:tableset>"
    ).encode()
