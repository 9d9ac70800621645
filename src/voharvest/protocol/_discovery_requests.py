"""The searches of a global discovery, without I/O: what is sent to each kind
of service for a batch of targets (an ObsCore upload or a single-target
query, SIA 2.0 ``POS`` circles, the band and time constraints), and which
target an answered image belongs to. Read through
:mod:`voharvest.protocol.discovery`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import ParameterError
from ._discovery_plan import Target
from ._encoding import format_number

__all__ = [
    "OBSCORE_TABLE",
    "TARGET_COLUMN",
    "assign_targets",
    "multipart_body",
    "obscore_target_query",
    "obscore_upload_query",
    "sia2_pos",
    "targets_votable",
    "time_interval",
    "wavelength_metres",
]

#: The ObsCore table every ObsCore service has (ObsCore 1.1, section 4).
OBSCORE_TABLE = "ivoa.obscore"
#: The column of an upload answer that holds the target's id.
TARGET_COLUMN = "vh_target"


# --- requests ---------------------------------------------------------------------------


def _mjd(value: Any) -> float:
    from ._encoding import is_time, to_float

    if is_time(value):
        return float(value.utc.mjd)
    return to_float(value, "time (MJD)")


def _constraints(band: Any, time: Any, prefix: str) -> list[str]:
    """ObsCore conditions for a wavelength (metres) and a time (MJD or interval)."""
    terms = []
    if band is not None:
        metres = wavelength_metres(band)
        terms.append(
            f"({prefix}em_min <= {format_number(metres)} AND {prefix}em_max >= "
            f"{format_number(metres)})"
        )
    if time is not None:
        lo, hi = time_interval(time)
        terms.append(
            f"({prefix}t_min <= {format_number(hi)} AND {prefix}t_max >= {format_number(lo)})"
        )
    return terms


def wavelength_metres(band: Any) -> float:
    """A spectral point (a Quantity of any spectral unit, or metres) in metres."""
    from ._encoding import is_quantity, to_float

    if is_quantity(band):
        from astropy import units as u

        try:
            return float(band.to_value(u.m, equivalencies=u.spectral()))
        except u.UnitConversionError as exc:
            raise ParameterError(f"band: {band!r} is not a spectral quantity") from exc
    return to_float(band, "band (metres)")


def time_interval(time: Any) -> tuple[float, float]:
    """(start, end) MJD of a time or a (start, end) pair."""
    if isinstance(time, tuple | list):
        if len(time) != 2:
            raise ParameterError(f"time: expected a time or a (start, end) pair, got {time!r}")
        lo, hi = _mjd(time[0]), _mjd(time[1])
    else:
        lo = hi = _mjd(time)
    return (lo, hi) if lo <= hi else (hi, lo)


def obscore_upload_query(*, band: Any = None, time: Any = None, table: str = OBSCORE_TABLE) -> str:
    """ObsCore images meeting the uploaded targets (``TAP_UPLOAD.targets``: id,
    ra, dec, radius), each row with its target's id in ``vh_target``."""
    where = ["o.dataproduct_type = 'image'", *_constraints(band, time, "o.")]
    return (
        f"SELECT t.id AS {TARGET_COLUMN}, o.* FROM {table} AS o "
        "JOIN TAP_UPLOAD.targets AS t ON "
        "(1 = CONTAINS(POINT('ICRS', o.s_ra, o.s_dec), CIRCLE('ICRS', t.ra, t.dec, t.radius)) "
        "OR 1 = INTERSECTS(CIRCLE('ICRS', t.ra, t.dec, t.radius), o.s_region)) "
        "WHERE " + " AND ".join(where)
    )


def obscore_target_query(
    target: Target, *, band: Any = None, time: Any = None, table: str = OBSCORE_TABLE
) -> str:
    """ObsCore images meeting one target (for services that refuse uploads)."""
    ra, dec, r = (format_number(v) for v in (target.ra, target.dec, target.radius))
    circle = f"CIRCLE('ICRS', {ra}, {dec}, {r})"
    where = [
        "dataproduct_type = 'image'",
        f"(1 = CONTAINS(POINT('ICRS', s_ra, s_dec), {circle})"
        f" OR 1 = INTERSECTS({circle}, s_region))",
        *_constraints(band, time, ""),
    ]
    return f"SELECT * FROM {table} WHERE " + " AND ".join(where)


def targets_votable(targets: Sequence[Target]) -> bytes:
    """The upload table of :func:`obscore_upload_query`: id, ra, dec, radius."""
    rows = "".join(
        f"<TR><TD>{t.id}</TD><TD>{t.ra!r}</TD><TD>{t.dec!r}</TD><TD>{t.radius!r}</TD></TR>"
        for t in targets
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        '<RESOURCE type="results"><TABLE name="targets">'
        '<FIELD name="id" datatype="long"/>'
        '<FIELD name="ra" datatype="double" unit="deg" ucd="pos.eq.ra"/>'
        '<FIELD name="dec" datatype="double" unit="deg" ucd="pos.eq.dec"/>'
        '<FIELD name="radius" datatype="double" unit="deg"/>'
        f"<DATA><TABLEDATA>{rows}</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n"
    ).encode()


def multipart_body(
    fields: Sequence[tuple[str, str]], files: Mapping[str, bytes]
) -> tuple[str, bytes]:
    """(Content-Type, body) of a ``multipart/form-data`` POST: the form fields,
    then each file (a TAP upload: ``UPLOAD=name,param:name`` names it)."""
    boundary = f"voharvest-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, content in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}.xml"\r\nContent-Type: application/x-votable+xml\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def sia2_pos(targets: Sequence[Target]) -> list[tuple[float, float, float]]:
    """The ``POS`` circles of an SIA 2.0 request for these targets (ORed by the service)."""
    return [(t.ra, t.dec, t.radius) for t in targets]


def _separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular distance in degrees (haversine)."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dp, dl = p2 - p1, math.radians(ra2 - ra1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def assign_targets(
    ra: float | None, dec: float | None, fov: float | None, targets: Sequence[Target]
) -> list[int]:
    """The targets of a multi-POS request an image answered for.

    An image (centre, field of view in degrees) belongs to each target whose
    circle meets the image's bounding circle; the service said it meets at
    least one, so an image that meets none by this test (no position, say)
    belongs to the nearest target, or to the first without a position.
    """
    if len(targets) == 1:
        return [targets[0].id]
    if ra is None or dec is None or not (math.isfinite(ra) and math.isfinite(dec)):
        return [targets[0].id]
    half = fov / 2 if fov is not None and math.isfinite(fov) and fov > 0 else 0.0
    distances = [(_separation(ra, dec, t.ra, t.dec), t) for t in targets]
    found = [t.id for d, t in distances if d <= t.radius + half + 1e-9]
    if found:
        return found
    return [min(distances, key=lambda item: item[0])[1].id]
