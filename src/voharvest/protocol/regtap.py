"""RegTAP 1.1: registry constraints to ADQL, and registry rows to resources.

:func:`build_query` turns what a user asks of the registry (``keywords``,
``servicetype``, ``waveband``, ...) into one ADQL query on the RegTAP ``rr``
schema that returns one row per resource, with its capabilities and interfaces
aggregated into a single column. What the registry can run (UNION, ILIKE, MOC,
the STC coverage tables) is described by a plain :class:`RegistryFeatures`
value, so a constraint a registry can't run is refused before any request.

Every user-supplied string goes through :func:`~._encoding.adql_string`: no
keyword, author or ivoid can leave its literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._checks import is_int
from .._exceptions import ParameterError, UnsupportedConstraintError
from ._encoding import (
    adql_string,
    angle,
    as_list,
    endpoints,
    is_quantity,
    is_skycoord,
    is_time,
    position_degrees,
    to_float,
)
from ._services import (
    FIELD_SEPARATOR,
    INTERFACE_FIELDS,
    INTERFACE_SEPARATOR,
    SERVICE_KINDS,
    Interface,
    Resource,
    has_resource_columns,
    resolve_servicetype,
    resource_from_row,
)

__all__ = [
    "FIELD_SEPARATOR",
    "INTERFACE_SEPARATOR",
    "RESOURCE_COLUMNS",
    "SERVICE_KINDS",
    "WAVEBANDS",
    "Interface",
    "RegistryFeatures",
    "Resource",
    "Spatial",
    "build_query",
    "has_resource_columns",
    "resolve_servicetype",
    "resource_from_row",
]

#: The IVOA messenger vocabulary, as RegTAP stores it (lower case).
WAVEBANDS = (
    "radio",
    "millimeter",
    "infrared",
    "optical",
    "uv",
    "euv",
    "x-ray",
    "gamma-ray",
    "neutrino",
    "photon",
)

_DATAMODELS = ("obscore", "epntap", "regtap")

# The rr.resource columns asked for: those pyvo's registry results have, so that
# a regsearch's ``to_table()`` has them too (pyvo.registry.regtap.RegistryResource).
RESOURCE_COLUMNS = (
    "ivoid",
    "res_type",
    "short_name",
    "res_title",
    "content_level",
    "res_description",
    "reference_url",
    "creator_seq",
    "created",
    "updated",
    "rights",
    "content_type",
    "source_format",
    "source_value",
    "region_of_regard",
    "waveband",
)


@dataclass(frozen=True, kw_only=True)
class RegistryFeatures:
    """What a RegTAP endpoint can run, beyond RegTAP 1.1 on ADQL 2.0.

    ``union`` and ``ilike`` are ADQL 2.1 features; ``moc`` is the ADQL ``MOC``
    function and ``stc`` the ``rr.stc_spatial``/``stc_spectral``/``stc_temporal``
    coverage tables. The default describes the GAVO registry (and DaCHS);
    :meth:`minimal` a plain RegTAP 1.1 service.
    """

    union: bool = True
    ilike: bool = True
    moc: bool = True
    stc: bool = True

    @classmethod
    def minimal(cls) -> RegistryFeatures:
        return cls(union=False, ilike=False, moc=False, stc=False)


@dataclass(frozen=True)
class Spatial:
    """A spatial registry constraint on the resources' coverage.

    ``geometry``: a SkyCoord or (ra, dec) point; ``(ra, dec, radius)`` or
    ``(SkyCoord, radius)`` circle; three or more vertices (pairs, SkyCoords or a
    flat list of numbers) for a polygon; or an ASCII MOC string
    (``"6/1-3 7/400"``). ``intersect``: ``covers`` (the coverage contains the
    geometry, the default), ``enclosed`` (the coverage lies inside it) or
    ``overlaps``. ``order`` is the MOC order geometries are converted at.
    """

    geometry: Any
    intersect: str = "covers"
    order: int = 6

    def __post_init__(self) -> None:
        if self.intersect.lower() not in ("covers", "enclosed", "overlaps"):
            raise ParameterError(
                f"spatial: intersect must be covers, enclosed or overlaps, not {self.intersect!r}"
            )
        if not is_int(self.order):
            raise ParameterError(f"spatial: order must be an integer, not {self.order!r}")
        if not 0 <= self.order <= 29:
            raise ParameterError(f"spatial: MOC order {self.order} is outside 0..29")


def _number(value: float) -> str:
    """A number as ADQL text (``1.5E-19``)."""
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise ParameterError(f"{value!r} can't be written in ADQL")
    return text.upper().replace("E+", "E")


def _nocase_like(column: str, pattern: str, features: RegistryFeatures) -> str:
    literal = adql_string(pattern, column)
    if features.ilike:
        return f"{column} ILIKE {literal}"
    return f"1=ivo_nocasematch({column}, {literal})"


def _keyword(word: Any, features: RegistryFeatures) -> str:
    if not isinstance(word, str) or not word.strip():
        raise ParameterError(f"keywords: expected non-empty strings, got {word!r}")
    word = word.strip()
    lit = adql_string(word, "keywords")
    subject = _nocase_like("res_subject", f"%{word}%", features)
    if features.union:
        return (
            f"ivoid IN (SELECT ivoid FROM rr.resource WHERE 1=ivo_hasword(res_description, {lit})"
            f" UNION SELECT ivoid FROM rr.resource WHERE 1=ivo_hasword(res_title, {lit})"
            f" UNION SELECT ivoid FROM rr.res_subject WHERE {subject})"
        )
    return (
        f"(1=ivo_hasword(res_description, {lit}) OR 1=ivo_hasword(res_title, {lit})"
        f" OR ivoid IN (SELECT ivoid FROM rr.res_subject WHERE {subject}))"
    )


def _standard_ids(servicetypes: Any, includeaux: bool) -> list[str]:
    ids: list[str] = []
    for servicetype in _nonempty(as_list(servicetypes), "servicetype"):
        if not isinstance(servicetype, str) or not servicetype.strip():
            raise ParameterError(f"servicetype: expected a string, got {servicetype!r}")
        if servicetype.strip().lower().startswith("ivo://"):
            ids.append(servicetype.strip().lower())
            continue
        main, aux = SERVICE_KINDS[resolve_servicetype(servicetype)]
        ids.extend(main + (aux if includeaux else ()))
    return ids


def _servicetype(servicetypes: Any, includeaux: bool) -> str:
    ids = _standard_ids(servicetypes, includeaux)
    exact = [adql_string(i, "servicetype") for i in ids if not i.endswith("%")]
    terms = [f"standard_id LIKE {adql_string(i, 'servicetype')}" for i in ids if i.endswith("%")]
    if exact:
        terms.insert(0, f"standard_id IN ({', '.join(exact)})")
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def _nonempty(values: list[Any], name: str) -> list[Any]:
    if not values:
        raise ParameterError(f"{name}: empty list")
    return values


def _waveband(wavebands: Any) -> str:
    terms = []
    for band in _nonempty(as_list(wavebands), "waveband"):
        name = band.strip().lower() if isinstance(band, str) else band
        if name not in WAVEBANDS:
            raise ParameterError(
                f"waveband: unknown {band!r}; the IVOA messenger vocabulary has "
                f"{', '.join(WAVEBANDS)}"
            )
        terms.append(f"1=ivo_hashlist_has(waveband, {adql_string(name)})")
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def _author(author: Any, features: RegistryFeatures) -> str:
    if not isinstance(author, str) or not author.strip():
        raise ParameterError(f"author: expected a non-empty string, got {author!r}")
    return (
        "ivoid IN (SELECT ivoid FROM rr.res_role WHERE base_role = 'creator' AND "
        f"{_nocase_like('role_name', author.strip(), features)})"
    )


def _datamodel(datamodel: Any, features: RegistryFeatures) -> str:
    name = datamodel.strip().lower() if isinstance(datamodel, str) else datamodel
    if name not in _DATAMODELS:
        raise ParameterError(f"datamodel: unknown {datamodel!r}; use one of {_DATAMODELS}")
    if name == "epntap":
        patterns = (
            "ivo://vopdc.obspm/std/epncore#schema-2.%",
            "ivo://ivoa.net/std/epntap#table-2.%",
        )
        cond = " OR ".join(_nocase_like("table_utype", p, features) for p in patterns)
        return f"ivoid IN (SELECT ivoid FROM rr.res_table WHERE {cond})"
    pattern = {"obscore": "ivo://ivoa.net/std/obscore%", "regtap": "ivo://ivoa.net/std/regtap#1.%"}
    return (
        "ivoid IN (SELECT ivoid FROM rr.res_detail WHERE "
        "detail_xpath = '/capability/dataModel/@ivo-id' AND "
        f"{_nocase_like('detail_value', pattern[name], features)})"
    )


def _ivoid(ivoids: Any) -> str:
    values = []
    for ivoid in as_list(ivoids):
        if not isinstance(ivoid, str) or not ivoid.strip().lower().startswith("ivo://"):
            raise ParameterError(f"ivoid: {ivoid!r} is not an IVOA identifier (ivo://...)")
        values.append(adql_string(ivoid.strip().lower(), "ivoid"))
    if not values:
        raise ParameterError("ivoid: no identifier given")
    if len(values) == 1:
        return f"ivoid = {values[0]}"
    return f"ivoid IN ({', '.join(values)})"


def _ucd(patterns: Any, features: RegistryFeatures) -> str:
    terms = []
    for pattern in _nonempty(as_list(patterns), "ucd"):
        if not isinstance(pattern, str) or not pattern.strip():
            raise ParameterError(f"ucd: expected non-empty patterns, got {pattern!r}")
        terms.append(_nocase_like("ucd", pattern.strip(), features))
    return f"ivoid IN (SELECT ivoid FROM rr.table_column WHERE {' OR '.join(terms)})"


_MOC_ASCII = re.compile(r"^\s*(\d+/[\d\s,\-]*)+\s*$")


def _vertex(value: Any, name: str) -> tuple[float, float]:
    return position_degrees(value, name)


def _coordinate_like(value: Any) -> bool:
    """A SkyCoord or a sequence (an (ra, dec) pair, say), not one number."""
    return is_skycoord(value) or isinstance(value, Sequence)


def _geometry(geometry: Any) -> tuple[str, str]:
    """(kind, ADQL geometry) for the forms :class:`Spatial` accepts."""
    if isinstance(geometry, str):
        if not _MOC_ASCII.match(geometry):
            raise ParameterError(f"spatial: {geometry!r} is not an ASCII MOC (e.g. '6/1-3 7/40')")
        return "moc", f"MOC({adql_string(' '.join(geometry.split()), 'spatial')})"
    if is_skycoord(geometry) and geometry.isscalar:
        ra, dec = position_degrees(geometry, "spatial")
        return "point", f"POINT({_number(ra)}, {_number(dec)})"
    if is_skycoord(geometry):
        items: list[Any] = list(geometry)
    elif isinstance(geometry, Sequence):
        items = list(geometry)
    else:
        raise ParameterError(f"spatial: can't use {geometry!r} as a geometry")
    if len(items) == 2 and not _coordinate_like(items[0]):
        ra, dec = position_degrees(items, "spatial")
        return "point", f"POINT({_number(ra)}, {_number(dec)})"
    if len(items) == 2 and is_skycoord(items[0]):
        items = [items[0].icrs.ra.deg, items[0].icrs.dec.deg, items[1]]
    if len(items) == 3 and not _coordinate_like(items[0]):
        ra, dec = position_degrees(items[:2], "spatial")
        radius = angle(items[2], "spatial radius")
        return "circle", f"CIRCLE({_number(ra)}, {_number(dec)}, {_number(radius)})"
    if items and all(_coordinate_like(item) for item in items):
        vertices = [_vertex(item, "spatial vertex") for item in items]
    elif len(items) % 2 == 0:
        vertices = [_vertex(items[i : i + 2], "spatial vertex") for i in range(0, len(items), 2)]
    else:
        raise ParameterError(f"spatial: can't use {geometry!r} as a geometry")
    if len(vertices) < 3:
        raise ParameterError(f"spatial: a polygon needs 3 or more vertices, got {len(vertices)}")
    coords = ", ".join(f"{_number(ra)}, {_number(dec)}" for ra, dec in vertices)
    return "polygon", f"POLYGON({coords})"


def _spatial(spatial: Any, features: RegistryFeatures) -> str:
    if not (features.stc and features.moc):
        raise UnsupportedConstraintError(
            "spatial: this registry has no rr.stc_spatial table or no MOC support"
        )
    constraint = spatial if isinstance(spatial, Spatial) else Spatial(spatial)
    kind, geom = _geometry(constraint.geometry)
    if kind != "moc":
        geom = f"MOC({constraint.order}, {geom})"
    intersect = constraint.intersect.lower()
    if intersect == "enclosed" and kind == "point":
        raise ParameterError("spatial: no coverage can be enclosed by a point")
    test = {
        "covers": f"1 = CONTAINS({geom}, coverage)",
        "enclosed": f"1 = CONTAINS(coverage, {geom})",
        "overlaps": f"1 = INTERSECTS({geom}, coverage)",
    }[intersect]
    return f"ivoid IN (SELECT ivoid FROM rr.stc_spatial WHERE {test})"


def _interval(lo: float | None, hi: float | None, start: str, end: str) -> str:
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    terms = []
    if hi is not None:
        terms.append(f"{start} <= {_number(hi)}")
    if lo is not None:
        terms.append(f"{end} >= {_number(lo)}")
    return " AND ".join(terms)


def spectral_condition(spectral: Any, features: RegistryFeatures) -> str:
    if not features.stc:
        raise UnsupportedConstraintError("spectral: this registry has no rr.stc_spectral table")
    joules: list[float | None] = []
    items = endpoints(spectral, "spectral")
    for item in items:
        if item is None:
            joules.append(None)
            continue
        if not is_quantity(item):
            raise ParameterError(f"spectral: {item!r} needs a unit (e.g. 500 * u.nm)")
        from astropy import units as u  # (loaded already: item is a Quantity)

        try:
            energy = float(item.to_value(u.J, equivalencies=u.spectral()))
        except u.UnitConversionError as exc:
            raise ParameterError(f"spectral: {item!r} is not a spectral quantity") from exc
        joules.append(to_float(energy, "spectral"))
    lo, hi = (joules[0], joules[0]) if len(joules) == 1 else (joules[0], joules[1])
    if any(is_quantity(i) and i.unit.is_equivalent("m") for i in items):
        # Wavelengths run against energy: (None, 700 nm) means 700 nm or shorter,
        # that is the energy of 700 nm or more.
        lo, hi = hi, lo
    cond = _interval(lo, hi, "spectral_start", "spectral_end")
    return f"ivoid IN (SELECT ivoid FROM rr.stc_spectral WHERE {cond})"


def temporal_condition(temporal: Any, features: RegistryFeatures) -> str:
    if not features.stc:
        raise UnsupportedConstraintError("temporal: this registry has no rr.stc_temporal table")
    mjds: list[float | None] = []
    for item in endpoints(temporal, "temporal"):
        if item is None:
            mjds.append(None)
        elif is_time(item):
            try:
                mjd = float(item.utc.mjd)
            except Exception as exc:  # astropy: a scale with no UTC conversion
                raise ParameterError(f"temporal: {item!r} can't be converted to UTC") from exc
            mjds.append(to_float(mjd, "temporal"))
        else:
            mjds.append(to_float(item, "temporal (MJD)"))
    lo, hi = (mjds[0], mjds[0]) if len(mjds) == 1 else (mjds[0], mjds[1])
    cond = _interval(lo, hi, "time_start", "time_end")
    return f"ivoid IN (SELECT ivoid FROM rr.stc_temporal WHERE {cond})"


def interfaces_aggregate() -> str:
    # Each COALESCE is parenthesised: DaCHS 2.7's ADQL parser (the GAVO
    # registry's software) rejects a bare COALESCE(...) as an operand of ||
    # ('Expected "FROM", found ...'); "(COALESCE(...))" parses everywhere.
    fields = [f"(COALESCE({name}, ''))" for name in INTERFACE_FIELDS]
    fields.append("(COALESCE(cap_description, ''))")
    joined = f" || '{FIELD_SEPARATOR}' || ".join(fields)
    return f"ivo_string_agg({joined}, '{INTERFACE_SEPARATOR}') AS interfaces"


def build_query(
    *,
    keywords: str | Iterable[str] | None = None,
    servicetype: str | Iterable[str] | None = None,
    waveband: str | Iterable[str] | None = None,
    author: str | None = None,
    datamodel: str | None = None,
    ivoid: str | Iterable[str] | None = None,
    ucd: str | Iterable[str] | None = None,
    spatial: Any = None,
    spectral: Any = None,
    temporal: Any = None,
    includeaux: bool = False,
    maxrec: int | None = None,
    features: RegistryFeatures = RegistryFeatures(),
) -> str:
    """The RegTAP ADQL query for the given constraints, all ANDed.

    - ``keywords``: each word must match the title or description
      (``ivo_hasword``) or a subject (case-insensitive substring); a ``%`` or
      ``_`` in a word widens the subject match like an SQL wildcard.
    - ``servicetype``: an alias (sia, sia2, ssa, scs, slap, tap, image, spectrum,
      ...) or a full standard id, or several (ORed); ``includeaux`` adds the
      auxiliary capabilities. Only matching capabilities are returned.
    - ``waveband``: messenger terms (ORed), case-insensitive.
    - ``author``: a creator name pattern (``%`` wildcard), case-insensitive.
    - ``datamodel``: obscore, epntap or regtap.
    - ``ivoid``: one identifier or several.
    - ``ucd``: column UCD patterns (``%`` wildcard), ORed.
    - ``spatial``: a :class:`Spatial` or its geometry.
    - ``spectral``: a Quantity in any spectral unit, or a (low, high) pair.
    - ``temporal``: an astropy Time or MJD, or a (start, end) pair.
    - ``maxrec``: at most this many resources (``TOP``).
    """
    conditions: list[str] = []
    if keywords is not None:
        words = as_list(keywords)
        if not words:
            raise ParameterError("keywords: no keyword given")
        conditions.extend(_keyword(word, features) for word in words)
    if servicetype is not None:
        conditions.append(_servicetype(servicetype, includeaux))
    if waveband is not None:
        conditions.append(_waveband(waveband))
    if author is not None:
        conditions.append(_author(author, features))
    if datamodel is not None:
        conditions.append(_datamodel(datamodel, features))
    if ivoid is not None:
        conditions.append(_ivoid(ivoid))
    if ucd is not None:
        conditions.append(_ucd(ucd, features))
    if spatial is not None:
        conditions.append(_spatial(spatial, features))
    if spectral is not None:
        conditions.append(spectral_condition(spectral, features))
    if temporal is not None:
        conditions.append(temporal_condition(temporal, features))

    top = ""
    if maxrec is not None:
        if not is_int(maxrec) or maxrec < 0:
            raise ParameterError(f"maxrec: expected a non-negative integer, got {maxrec!r}")
        top = f"TOP {maxrec} "
    columns = ", ".join(RESOURCE_COLUMNS)
    lines = [
        f"SELECT {top}{columns},",
        f"  {interfaces_aggregate()}",
        "FROM rr.resource",
        "NATURAL LEFT OUTER JOIN rr.capability",
        "NATURAL LEFT OUTER JOIN rr.interface",
    ]
    if conditions:
        lines.append("WHERE " + "\n  AND ".join(conditions))
    lines.append(f"GROUP BY {columns}")
    lines.append("ORDER BY ivoid")
    return "\n".join(lines)
