"""What is on the embedded sky: real galaxies at their real positions, and field stars.

The galaxies are a few of the brightest nearby ones, at their SIMBAD (ICRS)
positions, with the optical diameters D25 (major and minor axis), position
angles and total B magnitudes of the RC3 (de Vaucouleurs et al. 1991, *Third
Reference Catalogue of Bright Galaxies*). The field stars are made up: each
cell of a fixed grid on the sky draws its own stars from an RNG seeded by the
cell, so every service that looks at a place sees the same stars there.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["GALAXIES", "Galaxy", "Stars", "galaxies_near", "resolve_name", "stars_near"]


@dataclass(frozen=True)
class Galaxy:
    """A galaxy: ICRS position (degrees), D25 axes (arcmin), position angle, B magnitude."""

    name: str
    aliases: tuple[str, ...]
    ra: float
    dec: float
    major: float
    minor: float
    pa: float
    bmag: float
    kind: str  # "spiral", "edge-on" or "elliptical"

    @property
    def axis_ratio(self) -> float:
        return self.minor / self.major


_TABLE = """
# name | aliases | ra | dec | D25 major | D25 minor | PA | B | kind
M51 | NGC 5194; Whirlpool Galaxy | 202.469575 | 47.195258 | 11.2 | 6.9 | 163 | 8.96 | spiral
NGC 5195 | M51b | 202.498333 | 47.265556 | 5.8 | 4.6 | 79 | 10.45 | elliptical
M87 | NGC 4486; Virgo A | 187.705931 | 12.391123 | 8.3 | 6.6 | 170 | 9.59 | elliptical
M31 | NGC 224; Andromeda Galaxy | 10.684708 | 41.26875 | 190.0 | 60.0 | 35 | 4.36 | spiral
M32 | NGC 221 | 10.6743 | 40.865169 | 8.7 | 6.5 | 170 | 9.03 | elliptical
M101 | NGC 5457; Pinwheel Galaxy | 210.802267 | 54.34895 | 28.8 | 26.9 | 0 | 8.31 | spiral
M81 | NGC 3031; Bode's Galaxy | 148.888221 | 69.065295 | 26.9 | 14.1 | 157 | 7.89 | spiral
M82 | NGC 3034; Cigar Galaxy | 148.969687 | 69.679704 | 11.2 | 4.3 | 65 | 9.3 | edge-on
M104 | NGC 4594; Sombrero Galaxy | 189.997633 | -11.623054 | 8.7 | 3.5 | 89 | 8.98 | edge-on
M63 | NGC 5055; Sunflower Galaxy | 198.955541 | 42.029283 | 12.6 | 7.2 | 105 | 9.31 | spiral
M64 | NGC 4826; Black Eye Galaxy | 194.182067 | 21.682969 | 10.0 | 5.4 | 115 | 9.36 | spiral
M49 | NGC 4472 | 187.444992 | 8.000411 | 10.2 | 8.3 | 155 | 9.37 | elliptical
M33 | NGC 598; Triangulum Galaxy | 23.462042 | 30.660222 | 70.8 | 41.7 | 23 | 6.27 | spiral
NGC 4565 | Needle Galaxy | 189.086584 | 25.987674 | 15.9 | 1.85 | 136 | 10.42 | edge-on
NGC 891 |  | 35.639224 | 42.349146 | 13.5 | 2.5 | 22 | 10.81 | edge-on
NGC 4631 | Whale Galaxy | 190.533375 | 32.5415 | 15.5 | 2.7 | 86 | 9.75 | edge-on
NGC 1300 |  | 49.920815 | -19.411114 | 6.2 | 4.1 | 106 | 11.11 | spiral
NGC 253 | Sculptor Galaxy | 11.888002 | -25.28822 | 27.5 | 6.8 | 52 | 8.04 | edge-on
NGC 7331 |  | 339.266708 | 34.41592 | 10.5 | 3.7 | 171 | 10.35 | spiral
"""


def _parse(table: str) -> tuple[Galaxy, ...]:
    galaxies = []
    for line in table.strip().splitlines():
        if line.startswith("#"):
            continue
        name, aliases, *numbers, kind = (cell.strip() for cell in line.split("|"))
        ra, dec, major, minor, pa, bmag = (float(n) for n in numbers)
        names = tuple(a.strip() for a in aliases.split(";") if a.strip())
        galaxies.append(Galaxy(name, names, ra, dec, major, minor, pa, bmag, kind))
    return tuple(galaxies)


GALAXIES = _parse(_TABLE)


def _key(name: str) -> str:
    """Names compare without case or blanks: "M 51", "m51" and "M51" are one."""
    return "".join(name.split()).lower()


_BY_NAME = {_key(n): g for g in GALAXIES for n in (g.name, *g.aliases)}


def resolve_name(name: str) -> Galaxy | None:
    """The galaxy a catalogue name or alias stands for, or None."""
    return _BY_NAME.get(_key(name))


def _distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r = math.radians
    cos = math.sin(r(dec1)) * math.sin(r(dec2)) + math.cos(r(dec1)) * math.cos(r(dec2)) * math.cos(
        r(ra1 - ra2)
    )
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def galaxies_near(ra: float, dec: float, radius: float) -> list[Galaxy]:
    """Galaxies whose D25 ellipse may reach within ``radius`` degrees of (ra, dec)."""
    return [g for g in GALAXIES if _distance(ra, dec, g.ra, g.dec) <= radius + g.major / 120.0]


# --- field stars ------------------------------------------------------------------------

#: Height of a star cell (degrees); cells are about as wide.
CELL_DEG = 0.25
_CELL_BANDS = round(180 / CELL_DEG)
#: Stars per square degree, down to magnitude 21 (a high galactic latitude, roughly).
STAR_DENSITY = 1500.0
_MAG_BRIGHT, _MAG_FAINT = 11.0, 21.0


@dataclass(frozen=True)
class Stars:
    """Field stars: ICRS positions (degrees), r magnitudes and a colour (UV minus r)."""

    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray
    uv_colour: np.ndarray


def _cells_in_band(band: int) -> int:
    centre = -90.0 + (band + 0.5) * CELL_DEG
    return max(1, math.ceil(360.0 * math.cos(math.radians(centre)) / CELL_DEG))


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=4096)
def _cell_stars(seed: int, band: int, index: int) -> tuple[np.ndarray, ...]:
    count = _cells_in_band(band)
    dec_low = -90.0 + band * CELL_DEG
    width = 360.0 / count
    rng = np.random.default_rng(_seed("stars", seed, band, index))
    # Area of the cell (square degrees) sets how many stars it holds.
    area = (
        math.degrees(math.sin(math.radians(dec_low + CELL_DEG)) - math.sin(math.radians(dec_low)))
        * width
    )
    n = int(rng.poisson(STAR_DENSITY * area))
    ra = index * width + rng.random(n) * width
    sin_low = math.sin(math.radians(dec_low))
    sin_high = math.sin(math.radians(dec_low + CELL_DEG))
    dec = np.degrees(np.arcsin(sin_low + rng.random(n) * (sin_high - sin_low)))
    # Counts grow as 10^(0.3 m): draw magnitudes by inverting that distribution.
    low, high = 10 ** (0.3 * _MAG_BRIGHT), 10 ** (0.3 * _MAG_FAINT)
    mag = np.log10(low + rng.random(n) * (high - low)) / 0.3
    uv_colour = rng.uniform(0.3, 3.5, n)
    return ra, dec, mag, uv_colour


def stars_near(ra: float, dec: float, radius: float, seed: int = 0) -> Stars:
    """The field stars of every cell within ``radius`` degrees (plus a cell) of (ra, dec)."""
    reach = radius + CELL_DEG
    first = max(0, math.floor((dec - reach + 90.0) / CELL_DEG))
    last = min(_CELL_BANDS - 1, math.floor((dec + reach + 90.0) / CELL_DEG))
    parts: list[tuple[np.ndarray, ...]] = []
    for band in range(first, last + 1):
        count = _cells_in_band(band)
        width = 360.0 / count
        edge = min(89.9, max(abs(-90.0 + band * CELL_DEG), abs(-90.0 + (band + 1) * CELL_DEG)))
        half = reach / max(math.cos(math.radians(edge)), 1e-3)
        if half >= 180.0:
            indices: range | list[int] = range(count)
        else:
            low = math.floor(((ra - half) % 360.0) / width)
            span = min(count, math.ceil(2 * half / width) + 2)
            indices = sorted({(low + i) % count for i in range(span)})
        parts.extend(_cell_stars(seed, band, index) for index in indices)
    if not parts:
        empty = np.zeros(0)
        return Stars(empty, empty, empty, empty)
    return Stars(*(np.concatenate([p[i] for p in parts]) for i in range(4)))
