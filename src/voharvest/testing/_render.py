"""How one survey of the embedded sky sees it: its tiles, WCS, band, PSF and noise.

Every :class:`Survey` cuts the sky into its own grid of tiles (a different
size and phase per survey, some rotated against north, as scanned frames
are) and renders a tile by placing the sources of :mod:`._catalogue` through
the tile's WCS (:mod:`astropy.wcs`): galaxies as a bulge and an exponential
disk (spiral arms for face-on spirals, a dust lane for edge-on ones) scaled
to their D25 axes, stars as Gaussian PSFs, then sky and noise. The JPEG of a
tile is the same pixels, stretched (asinh) and flipped as a viewer shows a FITS
image (its first row
is the FITS image's last), so the FITS and JPEG of a tile show the same sky
and two surveys show the same object where their WCS say it is.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ._catalogue import Galaxy, galaxies_near, stars_near
from ._sky import Tile, encode_jpeg

__all__ = ["Survey", "SurveyTile", "render", "tile_fits", "tile_jpeg"]


@dataclass(frozen=True)
class Survey:
    """One survey: tile grid, pixel scale, band and detector of a simulated service.

    ``colour`` shifts every magnitude in this band (UV: galaxies fainter, ellipticals
    much fainter); ``rotation`` turns the frames against north (degrees, east of north).
    """

    key: str
    telescope: str
    instrument: str
    band: str
    tile_deg: float  # the grid's spacing
    frame_deg: float  # a frame's side: frames overlap, so every place is well inside one
    scale_arcsec: float
    psf_fwhm_arcsec: float
    zeropoint: float
    sky: float
    gain: float
    rotation: float = 0.0
    phase: float = 0.0
    spiral_colour: float = 0.0
    elliptical_colour: float = 0.0
    star_uv: bool = False
    seed: int = 0

    @property
    def naxis(self) -> int:
        """Pixels on a side."""
        return round(self.frame_deg * 3600.0 / self.scale_arcsec)

    def _bands(self) -> int:
        return math.ceil(180.0 / self.tile_deg)

    def _count(self, band: int) -> int:
        centre = self._band_centre(band)
        return max(1, math.ceil(360.0 * math.cos(math.radians(centre)) / self.tile_deg))

    def _band_centre(self, band: int) -> float:
        return min(89.99, max(-89.99, -90.0 + (band + 0.5 + self.phase) * self.tile_deg))

    def tile(self, band: int, index: int) -> SurveyTile | None:
        if not (0 <= band < self._bands() and 0 <= index < self._count(band)):
            return None
        count = self._count(band)
        ra = ((index + 0.5 + self.phase) * 360.0 / count) % 360.0
        return SurveyTile(band, index, ra, self._band_centre(band), survey=self)

    def tile_by_id(self, text: str) -> SurveyTile | None:
        band, sep, index = text.partition("-")
        if not (sep and band.isdigit() and index.isdigit() and len(band) <= 5):
            return None
        return self.tile(int(band), int(index))

    def tiles_near(self, ra: float, dec: float, radius: float, limit: int) -> list[SurveyTile]:
        """Tiles whose frame holds a point within ``radius`` degrees of (ra, dec), nearest first."""
        half_diagonal = self.frame_deg * math.sqrt(2) / 2
        reach = radius + half_diagonal
        first = max(0, math.floor((dec - reach + 90.0) / self.tile_deg - self.phase))
        last = min(self._bands() - 1, math.ceil((dec + reach + 90.0) / self.tile_deg - self.phase))
        found: list[tuple[float, SurveyTile]] = []
        for band in range(first, last + 1):
            count = self._count(band)
            width = 360.0 / count
            cos_dec = max(math.cos(math.radians(self._band_centre(band))), 1e-3)
            span = min(count, math.ceil(2 * reach / cos_dec / width) + 3)
            low = math.floor((ra - reach / cos_dec) / width - self.phase) - 1
            for step in range(span):
                tile = self.tile(band, (low + step) % count)
                if tile is None:
                    continue
                distance = _distance(ra, dec, tile.ra, tile.dec)
                if distance <= reach and tile.contains_near(ra, dec, radius):
                    found.append((distance, tile))
        found.sort(key=lambda item: (item[0], item[1].id))
        unique = list(dict.fromkeys(tile for _, tile in found))
        return unique[:limit]


@dataclass(frozen=True, kw_only=True)
class SurveyTile(Tile):
    """One frame of a survey: a tile of the survey's own grid (ids and dates of its own)."""

    survey: Survey

    _ID_DIGITS: ClassVar[tuple[int, int]] = (4, 5)
    _MJD_FIRST: ClassVar[float] = 54000.0
    _MJD_DAYS: ClassVar[int] = 2500
    _MJD_TIME: ClassVar[float] = 0.3

    def wcs(self) -> WCS:
        n = self.survey.naxis
        scale = self.survey.scale_arcsec / 3600.0
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [self.ra, self.dec]
        wcs.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
        wcs.wcs.cunit = ["deg", "deg"]
        theta = math.radians(self.survey.rotation)
        # Pixel +y points theta east of north; +x points (90 - theta) west of north.
        wcs.wcs.cd = [
            [-scale * math.cos(theta), scale * math.sin(theta)],
            [scale * math.sin(theta), scale * math.cos(theta)],
        ]
        wcs.wcs.radesys = "ICRS"
        return wcs

    def contains_near(self, ra: float, dec: float, radius: float) -> bool:
        """Whether (ra, dec), or a point ``radius`` from it, may fall inside the frame."""
        x, y = self.wcs().all_world2pix([[ra, dec]], 0)[0]
        margin = radius * 3600.0 / self.survey.scale_arcsec
        n = self.survey.naxis
        return bool(-margin <= x <= n - 1 + margin and -margin <= y <= n - 1 + margin)


def _distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r = math.radians
    cos = math.sin(r(dec1)) * math.sin(r(dec2)) + math.cos(r(dec1)) * math.cos(r(dec2)) * math.cos(
        r(ra1 - ra2)
    )
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def _seed(*parts: object) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def _add_galaxy(
    image: np.ndarray, wcs: WCS, galaxy: Galaxy, survey: Survey, psf_sigma: float
) -> None:
    n = image.shape[0]
    scale = survey.scale_arcsec
    x0, y0 = wcs.all_world2pix([[galaxy.ra, galaxy.dec]], 0)[0]
    colour = survey.elliptical_colour if galaxy.kind == "elliptical" else survey.spiral_colour
    flux = 10 ** (-0.4 * (galaxy.bmag + colour - survey.zeropoint))
    # Offsets of every pixel from the centre, east and north, in arcsec: through the
    # CD matrix, which holds the frame's rotation.
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    cd = wcs.wcs.cd * 3600.0
    dx, dy = x - x0, y - y0
    east = cd[0, 0] * dx + cd[0, 1] * dy  # intermediate world x grows to the east
    north = cd[1, 0] * dx + cd[1, 1] * dy
    pa = math.radians(galaxy.pa)
    along = east * math.sin(pa) + north * math.cos(pa)
    across = east * math.cos(pa) - north * math.sin(pa)
    q = max(galaxy.axis_ratio, 0.12)
    radius25 = galaxy.major * 60.0 / 2
    soft = (psf_sigma * scale) ** 2
    r = np.sqrt(along**2 + (across / q) ** 2 + soft)
    pixel_area = scale * scale
    if galaxy.kind == "elliptical":
        # de Vaucouleurs: total flux 7.215 pi Re^2 q I_e.
        re = radius25 / 3.0
        intensity = np.exp(-7.669 * ((r / re) ** 0.25 - 1.0))
        image += (flux / (7.215 * math.pi * re * re * q)) * intensity * pixel_area
        return
    disk_flux, bulge_flux = 0.88 * flux, 0.12 * flux
    if survey.star_uv:  # young stars: the disk dominates in the ultraviolet
        disk_flux, bulge_flux = 0.95 * flux, 0.05 * flux
    h = radius25 / 3.2
    disk = np.exp(-r / h) * disk_flux / (2 * math.pi * h * h * q)
    if galaxy.kind == "spiral" and q > 0.45:
        theta = np.arctan2(across / q, along)
        pitch = math.radians(18.0)
        arms = np.cos(2 * (theta - np.log(np.maximum(r, 1.0) / h) / math.tan(pitch)))
        strength = 0.9 if survey.star_uv else 0.6
        disk *= 1.0 + strength * arms * (1 - np.exp(-r / (0.5 * h)))
    if galaxy.kind == "edge-on":
        lane = radius25 * q * 0.15
        disk *= 1.0 - 0.7 * np.exp(-((across / lane) ** 2)) * (r > 0.1 * radius25)
    rb = max(radius25 / 40.0, 1.5 * psf_sigma * scale)
    bulge = np.exp(-0.5 * (r / rb) ** 2) * bulge_flux / (2 * math.pi * rb * rb * q)
    image += (disk + bulge) * pixel_area


def _add_stars(
    image: np.ndarray, wcs: WCS, tile: SurveyTile, survey: Survey, psf_sigma: float
) -> None:
    n = image.shape[0]
    radius = survey.frame_deg * math.sqrt(2) / 2
    stars = stars_near(tile.ra, tile.dec, radius, survey.seed)
    if stars.ra.size == 0:
        return
    pixels = wcs.all_world2pix(np.column_stack([stars.ra, stars.dec]), 0)
    mags = stars.mag + (stars.uv_colour if survey.star_uv else 0.0)
    fluxes = 10 ** (-0.4 * (mags - survey.zeropoint))
    half = max(3, math.ceil(4 * psf_sigma))
    offsets = np.arange(-half, half + 1)
    norm = 1.0 / (2 * math.pi * psf_sigma * psf_sigma)
    for (x, y), flux in zip(pixels, fluxes, strict=True):
        cx, cy = round(x), round(y)
        if not (-half <= cx < n + half and -half <= cy < n + half):
            continue
        xs, ys = cx + offsets, cy + offsets
        gx = np.exp(-0.5 * ((xs - x) / psf_sigma) ** 2)
        gy = np.exp(-0.5 * ((ys - y) / psf_sigma) ** 2)
        stamp = np.outer(gy, gx) * flux * norm
        x_ok = (xs >= 0) & (xs < n)
        y_ok = (ys >= 0) & (ys < n)
        if not x_ok.any() or not y_ok.any():
            continue
        image[ys[y_ok][0] : ys[y_ok][-1] + 1, xs[x_ok][0] : xs[x_ok][-1] + 1] += stamp[
            np.ix_(y_ok, x_ok)
        ]


@lru_cache(maxsize=64)
def render(tile: SurveyTile) -> np.ndarray:
    """The tile's pixels (counts, float32, FITS order: row 0 is the bottom)."""
    survey = tile.survey
    n = survey.naxis
    wcs = tile.wcs()
    psf_sigma = survey.psf_fwhm_arcsec / survey.scale_arcsec / 2.3548
    image = np.zeros((n, n), dtype=np.float64)
    radius = survey.frame_deg * math.sqrt(2) / 2
    for galaxy in galaxies_near(tile.ra, tile.dec, radius):
        _add_galaxy(image, wcs, galaxy, survey, psf_sigma)
    _add_stars(image, wcs, tile, survey, psf_sigma)
    rng = np.random.default_rng(_seed("noise", survey.key, survey.seed, tile.id))
    noise = rng.standard_normal((n, n)) * np.sqrt((survey.sky + np.maximum(image, 0)) / survey.gain)
    image += survey.sky + noise
    image.flags.writeable = False
    return image.astype(np.float32)


def _header(tile: SurveyTile) -> fits.Header:
    survey = tile.survey
    header = tile.wcs().to_header()
    cards = [
        ("OBJECT", f"{survey.key} frame {tile.id}", "tile of the embedded sky"),
        ("TELESCOP", survey.telescope, "simulated"),
        ("INSTRUME", survey.instrument, "simulated"),
        ("FILTER", survey.band, "band"),
        ("BUNIT", "count", ""),
        ("MJD-OBS", tile.mjd, "made up, fixed per frame"),
        ("SKYLEVEL", survey.sky, "[count] mean sky per pixel"),
        ("GAIN", survey.gain, "[e-/count]"),
        ("PSF_FWHM", survey.psf_fwhm_arcsec, "[arcsec]"),
        ("ORIGIN", "voharvest.testing embedded sky", "synthetic data, not a real survey"),
    ]
    for key, value, comment in cards:
        header[key] = (value, comment)
    return header


@lru_cache(maxsize=128)
def tile_fits(tile: SurveyTile) -> bytes:
    """The FITS file of a tile (float32 counts, TAN WCS)."""
    buffer = io.BytesIO()
    fits.PrimaryHDU(render(tile), _header(tile)).writeto(buffer)
    return buffer.getvalue()


def cutout_fits(tile: SurveyTile, ra: float, dec: float, radius: float) -> bytes | None:
    """A cutout of the tile around (ra, dec), ``radius`` degrees; None when they don't meet."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.nddata import Cutout2D, NoOverlapError

    wcs = tile.wcs()
    try:
        cut = Cutout2D(
            render(tile), SkyCoord(ra, dec, unit="deg"), 2 * radius * u.deg, wcs=wcs, mode="trim"
        )
    except (NoOverlapError, ValueError):
        return None
    header = _header(tile)
    header.update(cut.wcs.to_header())
    header["OBJECT"] = (f"{tile.survey.key} cutout of {tile.id}", "SODA cutout")
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.ascontiguousarray(cut.data), header).writeto(buffer)
    return buffer.getvalue()


def stretch(pixels: np.ndarray, sky: float, noise: float) -> np.ndarray:
    """8-bit display values: asinh from one noise below the sky to the brightest pixel."""
    low = sky - noise
    high = float(np.max(pixels))
    span = max(high - low, 1e-6)
    soft = 8 * noise / span  # asinh turns from linear to logarithmic a few noise above the sky
    values = np.clip((pixels - low) / span, 0.0, 1.0)
    scaled = np.arcsinh(values / soft) / math.asinh(1.0 / soft)
    out: np.ndarray = np.rint(scaled * 255.0).astype(np.uint8)
    return out


@lru_cache(maxsize=128)
def tile_jpeg(tile: SurveyTile) -> bytes:
    """The JPEG of a tile: the FITS pixels stretched, north up (rows flipped)."""
    survey = tile.survey
    noise = math.sqrt(survey.sky / survey.gain)
    return encode_jpeg(stretch(render(tile), survey.sky, noise)[::-1], quality=90)
