"""A deterministic synthetic sky: a grid of tiles, their FITS images and JPEG previews.

The sky is cut into Dec bands :data:`TILE_DEG` high; each band into tiles
about as wide (fewer towards the poles). A tile is named ``"<band>-<index>"``
(``"450-0012"``). A FITS image of a tile has a TAN WCS centred on the tile
and pixel data streamed from a repeating noise buffer at an offset seeded by
the tile, so files of any size cost no CPU to make; only headers (and JPEG
previews) are built per tile, and cached.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, lru_cache
from typing import ClassVar

import numpy as np

__all__ = [
    "TILE_DEG",
    "FitsImage",
    "Sky",
    "Tile",
    "encode_jpeg",
    "search_tiles",
    "tile_by_id",
    "tile_of",
]

#: Height of a Dec band and (about) width of a tile, in degrees.
TILE_DEG = 0.2
_BANDS = round(180 / TILE_DEG)
# A tile's centre is at most about half its diagonal from any point in it.
_MARGIN = TILE_DEG * math.sqrt(2) / 2
_FITS_BLOCK = 2880
_MJD_1858 = datetime(1858, 11, 17)


@dataclass(frozen=True)
class Tile:
    """One tile of the grid: Dec band, index in the band, centre in ICRS degrees."""

    band: int
    index: int
    ra: float
    dec: float

    # How a kind of tile spells its id and spreads its dates (a subclass sets its own).
    _ID_DIGITS: ClassVar[tuple[int, int]] = (3, 4)
    _MJD_FIRST: ClassVar[float] = 57023.0
    _MJD_DAYS: ClassVar[int] = 3650
    _MJD_TIME: ClassVar[float] = 0.25

    @property
    def id(self) -> str:
        band_digits, index_digits = self._ID_DIGITS
        return f"{self.band:0{band_digits}d}-{self.index:0{index_digits}d}"

    @property
    def mjd(self) -> float:
        """A made-up but fixed observation date (MJD) for the tile."""
        spread = (self.band * 7919 + self.index * 104729) % self._MJD_DAYS
        return self._MJD_FIRST + spread + self._MJD_TIME


@cache
def _band_count(band: int) -> int:
    centre = -90.0 + (band + 0.5) * TILE_DEG
    return max(1, math.ceil(360.0 * math.cos(math.radians(centre)) / TILE_DEG))


def _tile(band: int, index: int) -> Tile:
    count = _band_count(band)
    return Tile(band, index, (index + 0.5) * 360.0 / count, -90.0 + (band + 0.5) * TILE_DEG)


def tile_of(ra: float, dec: float) -> Tile:
    """The tile that contains a position."""
    band = min(_BANDS - 1, max(0, math.floor((dec + 90.0) / TILE_DEG)))
    count = _band_count(band)
    return _tile(band, math.floor((ra % 360.0) / (360.0 / count)) % count)


def tile_by_id(text: str) -> Tile | None:
    """The tile named ``"<band>-<index>"``, or None if there is no such tile."""
    band_text, sep, index_text = text.partition("-")
    if not (sep and band_text.isdigit() and index_text.isdigit()):
        return None
    if len(band_text) != 3 or len(index_text) != 4:
        return None
    band, index = int(band_text), int(index_text)
    if band >= _BANDS or index >= _band_count(band):
        return None
    return _tile(band, index)


def _separation(ra: float, dec: float, ras: np.ndarray, decs: np.ndarray) -> np.ndarray:
    """Angular distances in degrees (haversine)."""
    ra1, dec1 = math.radians(ra), math.radians(dec)
    ra2, dec2 = np.radians(ras), np.radians(decs)
    term = (
        np.sin((dec2 - dec1) / 2) ** 2
        + math.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    )
    return np.asarray(np.degrees(2 * np.arcsin(np.sqrt(np.clip(term, 0.0, 1.0)))))


def search_tiles(ra: float, dec: float, radius: float, limit: int) -> list[Tile]:
    """Tiles whose centre is within ``radius`` (plus half a tile diagonal), nearest first.

    At least one (the tile containing the position), at most ``limit``; the
    same input always gives the same tiles in the same order.
    """
    # Only the ``limit`` nearest are kept: no need to look further than they can be.
    reach = min(max(radius, 0.0) + _MARGIN, TILE_DEG * (math.sqrt(limit) + 2) + _MARGIN)
    first = max(0, math.floor((dec - reach + 90.0) / TILE_DEG))
    last = min(_BANDS - 1, math.floor((dec + reach + 90.0) / TILE_DEG))
    bands: list[int] = []
    indices: list[int] = []
    for band in range(first, last + 1):
        count = _band_count(band)
        width = 360.0 / count
        nearest_equator = min(abs(-90.0 + band * TILE_DEG), abs(-90.0 + (band + 1) * TILE_DEG))
        cos_dec = math.cos(math.radians(min(89.999, nearest_equator)))
        half_ra = reach / cos_dec if cos_dec > 0 else 360.0
        if half_ra >= 180.0 or count <= 3:
            band_indices = range(count)
        else:
            low = math.floor(((ra - half_ra) % 360.0) / width)
            span = math.ceil(2 * half_ra / width) + 1
            band_indices = range(low, low + min(span, count))
        for index in band_indices:
            bands.append(band)
            indices.append(index % count)
    tiles = [_tile(b, i) for b, i in dict.fromkeys(zip(bands, indices, strict=True))]
    ras = np.array([t.ra for t in tiles])
    decs = np.array([t.dec for t in tiles])
    distances = _separation(ra, dec, ras, decs)
    found = sorted((float(d), t.id, t) for d, t in zip(distances, tiles, strict=True) if d <= reach)
    chosen = [t for _, _, t in found[:limit]]
    return chosen or [tile_of(ra, dec)]


def _seed_of(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _shape(image_bytes: int, bytes_per_pixel: int) -> tuple[int, int]:
    """NAXIS1, NAXIS2 for a file of about ``image_bytes`` (one header block included)."""
    pixels = max(1, (image_bytes - _FITS_BLOCK) // bytes_per_pixel)
    naxis1 = max(1, math.isqrt(pixels))
    return naxis1, max(1, pixels // naxis1)


def _date(mjd: float) -> str:
    return (_MJD_1858 + timedelta(days=mjd)).strftime("%Y-%m-%dT%H:%M:%S")


@lru_cache(maxsize=512)
def _fits_header(tile: Tile, naxis1: int, naxis2: int, bitpix: int) -> bytes:
    from astropy.io import fits  # only where a FITS header is built: the farm loads without it

    scale = TILE_DEG / max(naxis1, naxis2)
    header = fits.Header()
    cards: list[tuple[str, object, str]] = [
        ("SIMPLE", True, "conforms to FITS standard"),
        ("BITPIX", bitpix, "array data type"),
        ("NAXIS", 2, "number of array dimensions"),
        ("NAXIS1", naxis1, ""),
        ("NAXIS2", naxis2, ""),
        ("WCSAXES", 2, ""),
        ("CTYPE1", "RA---TAN", ""),
        ("CTYPE2", "DEC--TAN", ""),
        ("CRVAL1", tile.ra, "[deg] tile centre"),
        ("CRVAL2", tile.dec, "[deg] tile centre"),
        ("CRPIX1", (naxis1 + 1) / 2, ""),
        ("CRPIX2", (naxis2 + 1) / 2, ""),
        ("CDELT1", -scale, "[deg/pixel]"),
        ("CDELT2", scale, "[deg/pixel]"),
        ("CUNIT1", "deg", ""),
        ("CUNIT2", "deg", ""),
        ("RADESYS", "ICRS", ""),
        ("EQUINOX", 2000.0, ""),
        ("DATE-OBS", _date(tile.mjd), "made up, fixed per tile"),
        ("MJD-OBS", tile.mjd, ""),
        ("OBJECT", f"VOFarm tile {tile.id}", ""),
        ("TELESCOP", "VOFarm", "a simulated survey"),
        ("ORIGIN", "voharvest.testing", ""),
        ("BUNIT", "adu", ""),
    ]
    for key, value, comment in cards:
        header.append((key, value, comment))
    return str(header.tostring()).encode("ascii")


class FitsImage:
    """The bytes of one FITS file, served in chunks without being built in memory."""

    def __init__(
        self, header: bytes, naxis: tuple[int, int], bitpix: int, buffer: memoryview, offset: int
    ) -> None:
        self.header = header
        self.naxis = naxis
        self.bitpix = bitpix
        self.data_bytes = naxis[0] * naxis[1] * (abs(bitpix) // 8)
        self.size = len(header) + -(-self.data_bytes // _FITS_BLOCK) * _FITS_BLOCK
        self._buffer = buffer  # the noise buffer, twice over: any slice up to half is contiguous
        self._period = len(buffer) // 2
        self._offset = offset

    def chunks(self, start: int, end: int, chunk: int) -> Iterator[bytes | memoryview]:
        """The file's bytes ``[start, end)`` in pieces of at most ``chunk`` bytes."""
        chunk = max(1, min(chunk, self._period))
        head = len(self.header)
        data_end = head + self.data_bytes
        position = start
        while position < end:
            if position < head:
                stop = min(end, head, position + chunk)
                yield self.header[position:stop]
            elif position < data_end:
                stop = min(end, data_end, position + chunk)
                at = (self._offset + position - head) % self._period
                yield self._buffer[at : at + stop - position]
            else:
                stop = min(end, position + chunk)
                yield bytes(stop - position)
            position = stop

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """The bytes ``[start, end)`` at once (tests; use :meth:`chunks` to serve)."""
        stop = self.size if end is None else end
        return b"".join(bytes(piece) for piece in self.chunks(start, stop, 1 << 20))


class Sky:
    """The synthetic sky of one farm: FITS images and JPEG previews of its tiles."""

    #: Bytes of noise per BITPIX, repeated through every image (a multiple of 4 and 2).
    PERIOD = 1 << 20

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._buffers: dict[int, memoryview] = {}

    def _buffer(self, bitpix: int) -> memoryview:
        buffer = self._buffers.get(bitpix)
        if buffer is None:
            rng = np.random.default_rng(_seed_of("noise", self.seed, bitpix))
            size = self.PERIOD // (abs(bitpix) // 8)
            values = rng.normal(1000.0, 30.0, size)
            spikes = rng.random(size) < 0.001
            values[spikes] += rng.exponential(5000.0, int(spikes.sum()))
            dtype = ">i2" if bitpix == 16 else ">f4"
            array = np.clip(values, 0, 32767).astype(dtype)
            raw = array.tobytes()
            buffer = memoryview(raw + raw)
            self._buffers[bitpix] = buffer
        return buffer

    @staticmethod
    def fits_facts(image_bytes: int, bitpix: int) -> tuple[int, tuple[int, int]]:
        """(file size, (NAXIS1, NAXIS2)) of every FITS image of that size, without building one.

        The header's 24 cards and END fit one 2880-byte block, whatever the tile.
        """
        per_pixel = abs(bitpix) // 8
        naxis = _shape(image_bytes, per_pixel)
        data_bytes = naxis[0] * naxis[1] * per_pixel
        return _FITS_BLOCK + -(-data_bytes // _FITS_BLOCK) * _FITS_BLOCK, naxis

    def fits(self, tile: Tile, image_bytes: int, bitpix: int) -> FitsImage:
        """The FITS file of a tile, about ``image_bytes`` long."""
        per_pixel = abs(bitpix) // 8
        naxis1, naxis2 = _shape(image_bytes, per_pixel)
        header = _fits_header(tile, naxis1, naxis2, bitpix)
        buffer = self._buffer(bitpix)
        pixels = self.PERIOD // per_pixel
        offset = _seed_of("tile", self.seed, tile.id) % pixels * per_pixel
        return FitsImage(header, (naxis1, naxis2), bitpix, buffer, offset)

    #: Width and height of the JPEG previews.
    JPEG_SIZE = 64
    #: Length of every JPEG preview in bytes (a comment segment pads it): a
    #: search answer states an image's size without rendering it, so answering
    #: a search never blocks the farm's event loop on a JPEG encode (about 2 ms
    #: each) and the farm stamps every request's arrival on time.
    JPEG_BYTES = 1024

    def jpeg(self, tile: Tile) -> bytes:
        """A 64 x 64 grey preview of the tile (a fuzzy galaxy and some stars)."""
        return _preview(self.seed, tile.id)


@lru_cache(maxsize=256)
def _preview(seed: int, tile_id: str) -> bytes:
    rng = np.random.default_rng(_seed_of("preview", seed, tile_id))
    size = Sky.JPEG_SIZE
    y, x = np.mgrid[0:size, 0:size].astype(float)
    image = 20.0 + 10.0 * x / size + rng.normal(0.0, 3.0, (size, size))
    cx, cy = rng.uniform(16, 48, 2)
    sigma = rng.uniform(4, 9)
    image += 180.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    for sx, sy, flux in zip(
        rng.uniform(0, size, 6), rng.uniform(0, size, 6), rng.uniform(60, 200, 6), strict=True
    ):
        image += flux * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / 2.0)
    return _padded(encode_jpeg(np.clip(image, 0, 255).astype(np.uint8)), Sky.JPEG_BYTES)


def _padded(jpeg: bytes, length: int) -> bytes:
    """``jpeg`` made exactly ``length`` bytes long by a comment (COM) segment after APP0."""
    after_app0 = 4 + int.from_bytes(jpeg[4:6], "big")
    padding = length - len(jpeg) - 4
    if not 0 <= padding <= 0xFFFD:
        raise ValueError(f"a {len(jpeg)}-byte JPEG can't be padded to {length} bytes")
    comment = (b"VOFarm preview " + b" " * padding)[:padding]
    return jpeg[:after_app0] + _segment(0xFE, comment) + jpeg[after_app0:]


# --- a minimal baseline JPEG encoder (grey, 8-bit, standard tables) -----------------

# ITU T.81 Annex K: luminance quantisation table and Huffman tables.
_QUANT = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=float,
)
_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_DC_VALUES = tuple(range(12))
_AC_BITS = (0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D)
_AC_FIRST = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0243362728209"
)


def _ac_values() -> tuple[int, ...]:
    # The 162 symbols are EOB, ZRL and every (run, size 1..10); the first 37 have
    # codes shorter than 16 bits, the rest follow in ascending order.
    symbols = {0x00, 0xF0} | {run << 4 | size for run in range(16) for size in range(1, 11)}
    rest = sorted(symbols - set(_AC_FIRST))
    return tuple(_AC_FIRST) + tuple(rest)


_AC_VALUES = _ac_values()


def _codes(bits: tuple[int, ...], values: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """symbol -> (code, length) of a Huffman table given as counts per length."""
    codes: dict[int, tuple[int, int]] = {}
    code = 0
    position = 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[values[position]] = (code, length)
            code += 1
            position += 1
        code <<= 1
    return codes


_DC_CODES = _codes(_DC_BITS, _DC_VALUES)
_AC_CODES = _codes(_AC_BITS, _AC_VALUES)


def _zigzag() -> list[tuple[int, int]]:
    order = []
    for total in range(15):
        rows = range(max(0, total - 7), min(total, 7) + 1)
        for row in rows if total % 2 else reversed(rows):
            order.append((row, total - row))
    return order


_ZIGZAG = _zigzag()
_ZIGZAG_ROWS = np.array([r for r, _ in _ZIGZAG])
_ZIGZAG_COLS = np.array([c for _, c in _ZIGZAG])
_DCT = np.array(
    [
        [
            (math.sqrt(1 / 8) if u == 0 else math.sqrt(2 / 8))
            * math.cos((2 * x + 1) * u * math.pi / 16)
            for x in range(8)
        ]
        for u in range(8)
    ]
)


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self._bits = 0
        self._count = 0

    def write(self, value: int, length: int) -> None:
        self._bits = (self._bits << length) | (value & ((1 << length) - 1))
        self._count += length
        while self._count >= 8:
            self._count -= 8
            byte = (self._bits >> self._count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)
        self._bits &= (1 << self._count) - 1

    def flush(self) -> bytes:
        if self._count:
            self.write((1 << (8 - self._count)) - 1, 8 - self._count)
        return bytes(self.out)


def _magnitude(value: int) -> tuple[int, int]:
    """(size category, bits) of a coefficient, as JPEG codes them."""
    size = abs(value).bit_length()
    return size, value if value >= 0 else value + (1 << size) - 1


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def _quant_table(quality: int) -> np.ndarray:
    """The luminance table scaled for a quality of 1..100 (the IJG scaling; 50 is the table)."""
    quality = min(100, max(1, quality))
    factor = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_QUANT * factor + 50) / 100), 1, 255)


def encode_jpeg(pixels: np.ndarray, quality: int = 50) -> bytes:
    """A baseline grey JPEG of an 8-bit 2-D array (sides padded to multiples of 8)."""
    height, width = pixels.shape
    padded = np.pad(pixels, ((0, -height % 8), (0, -width % 8)), mode="edge").astype(float)
    table = _quant_table(quality)
    rows, cols = padded.shape[0] // 8, padded.shape[1] // 8
    # Every block at once: (rows, cols, 8, 8) -> DCT -> quantised -> zigzag order.
    blocks = padded.reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3) - 128.0
    transformed = np.einsum("ux,rcxy,vy->rcuv", _DCT, blocks, _DCT)
    quantised = np.rint(transformed / table).astype(int)
    zigzagged = quantised[:, :, _ZIGZAG_ROWS, _ZIGZAG_COLS].reshape(rows * cols, 64)
    writer = _BitWriter()
    previous_dc = 0
    for coefficients in zigzagged.tolist():
        diff = coefficients[0] - previous_dc
        previous_dc = coefficients[0]
        size, bits = _magnitude(diff)
        writer.write(*_DC_CODES[size])
        if size:
            writer.write(bits, size)
        run = 0
        for value in coefficients[1:]:
            if value == 0:
                run += 1
                continue
            while run > 15:
                writer.write(*_AC_CODES[0xF0])
                run -= 16
            size, bits = _magnitude(value)
            writer.write(*_AC_CODES[run << 4 | size])
            writer.write(bits, size)
            run = 0
        if run:
            writer.write(*_AC_CODES[0x00])
    quant = bytes(int(v) for v in table[_ZIGZAG_ROWS, _ZIGZAG_COLS])
    return b"".join(
        [
            b"\xff\xd8",
            _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            _segment(0xDB, b"\x00" + quant),
            _segment(
                0xC0,
                b"\x08"
                + height.to_bytes(2, "big")
                + width.to_bytes(2, "big")
                + b"\x01\x01\x11\x00",
            ),
            _segment(0xC4, b"\x00" + bytes(_DC_BITS) + bytes(_DC_VALUES)),
            _segment(0xC4, b"\x10" + bytes(_AC_BITS) + bytes(_AC_VALUES)),
            _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            writer.flush(),
            b"\xff\xd9",
        ]
    )
