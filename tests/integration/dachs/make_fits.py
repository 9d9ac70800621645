"""Write the FITS images the DaCHS image collections serve.

Two collections, each a DaCHS resource with an SIA v1 service that also
publishes into ``ivoa.obscore`` (so the site-wide SIA v2 service finds them):

- ``sdss``: an SDSS-like optical collection, bands g and r;
- ``uvot``: a Swift UVOT-like ultraviolet collection, band uvw1.

And a third, ``dlimg``, an infrared collection (bands J and Ks) served through
DataLink and SODA: its images are larger (800 x 800 pixels of 1 arcsec, about
2.5 MB each), so that a cutout of a few arcminutes is much smaller than the
file, and have no JPEG renderings. It is in ``ivoa.obscore`` too, one row
per image whose access URL is its DataLink document.

Every image is a small float32 array with a valid celestial WCS (TAN), centred
a little off its target so a "does the WCS cover the target" check means
something, and carries OBJECT, DATE-OBS, FILTER, EXPTIME and its bandpass in
metres (WAVEMIN, WAVEMAX, WAVEREF). Next to each ``x.fits`` goes ``x.jpg``,
its 8-bit rendering (north up, east left), which the RDs serve as a second SIA
record with the same footprint. The content is seeded: running this twice
writes the same bytes, and files that are already right are left alone.

Run with any Python that has astropy, numpy and Pillow (DaCHS's own python3
does):

    python3 make_fits.py <inputs-directory>

which writes ``<inputs-directory>/sdss/data/*.fits`` and
``<inputs-directory>/uvot/data/*.fits`` (and ``*.jpg``), and
``<inputs-directory>/dlimg/data/*.fits``.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

#: name -> (ra, dec) in degrees, ICRS.
TARGETS = {
    "M51": (202.469575, 47.195258),
    "M101": (210.802429, 54.348750),
    "M87": (187.705930, 12.391123),
    "M31": (10.684708, 41.268750),
    "NGC1068": (40.669629, -0.013281),
}

#: Pixels per side, and degrees per pixel: each image is 0.25 degrees wide.
NAXIS = 150
SCALE = 0.25 / NAXIS

#: collection -> (telescope, instrument, bands, targets); a band is
#: (filter, (lowest, reference, highest) wavelength in metres, exposure s).
COLLECTIONS = {
    "sdss": (
        "SDSS 2.5m (simulated)",
        "VOH imaging camera",
        (
            ("g", (4.0e-7, 4.77e-7, 5.5e-7), 53.9),
            ("r", (5.6e-7, 6.23e-7, 6.9e-7), 53.9),
        ),
        ("M51", "M101", "M87"),
    ),
    "uvot": (
        "Swift (simulated)",
        "VOH UV telescope",
        (("uvw1", (2.2e-7, 2.6e-7, 3.0e-7), 800.0),),
        ("M51", "M101", "M31", "NGC1068"),
    ),
}

#: The centre of every image is this far (degrees, in Dec) from its target.
OFFSET = 0.03

#: The DataLink/SODA collection (not in ``COLLECTIONS``: it has other sizes,
#: no JPEGs, and its ObsCore rows lead to DataLink documents): telescope,
#: instrument, bands, targets, like a ``COLLECTIONS`` entry.
DLIMG = (
    "VOH IR telescope (simulated)",
    "VOH IR camera",
    (
        ("J", (1.08e-6, 1.25e-6, 1.41e-6), 7.8),
        ("Ks", (1.99e-6, 2.15e-6, 2.31e-6), 7.8),
    ),
    ("M51", "M87", "NGC1068"),
)
#: Pixels per side and degrees per pixel of the DataLink images (1 arcsec).
DLIMG_NAXIS = 800
DLIMG_SCALE = 1.0 / 3600


def image_name(collection: str, target: str, band: str) -> str:
    return f"{collection}_{target.lower()}_{band}.fits"


def expected_images() -> dict[str, list[tuple[str, str]]]:
    """collection -> [(target, band), ...], in the order written."""
    return {
        name: [(target, band[0]) for target in targets for band in bands]
        for name, (_, _, bands, targets) in COLLECTIONS.items()
    }


def dlimg_images() -> list[tuple[str, str]]:
    """[(target, band), ...] of the DataLink collection, in the order written."""
    _, _, bands, names = DLIMG
    return [(target, band[0]) for target in names for band in bands]


def _image(
    collection: str,
    target: str,
    band: tuple[str, tuple[float, float, float], float],
    naxis: int = NAXIS,
    scale: float = SCALE,
    month: str = "2004-03",
    sigma: float = 6.0,
):
    import numpy as np
    from astropy.io import fits
    from astropy.time import Time
    from astropy.wcs import WCS

    telescope, instrument, _, _ = DLIMG if collection == "dlimg" else COLLECTIONS[collection]
    filter_name, (low, ref, high), exptime = band
    ra, dec = TARGETS[target]
    seed = int.from_bytes(
        hashlib.sha256(f"{collection}/{target}/{filter_name}".encode()).digest()[:4]
    )
    rng = np.random.default_rng(seed)

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec + OFFSET]
    wcs.wcs.crpix = [(naxis + 1) / 2, (naxis + 1) / 2]
    wcs.wcs.cdelt = [-scale, scale]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0

    # A smooth "galaxy" at the target's pixel (sigma in pixels), on a noisy sky.
    x, y = np.meshgrid(np.arange(naxis), np.arange(naxis))
    tx, ty = wcs.wcs_world2pix([[ra, dec]], 0)[0]
    r2 = (x - tx) ** 2 + (y - ty) ** 2
    data = 100.0 * np.exp(-r2 / (2 * sigma**2)) + rng.normal(10.0, 1.0, (naxis, naxis))

    header = wcs.to_header()
    header["OBJECT"] = (target, "target of the observation")
    day = 10 + sorted(TARGETS).index(target)
    start = Time(f"{month}-{day:02d}T04:{len(filter_name) * 7:02d}:00", scale="utc")
    header["DATE-OBS"] = (start.isot, "UTC start")
    header["MJD-OBS"] = (start.mjd, "[d] UTC start as MJD")
    header["FILTER"] = (filter_name, "filter")
    header["EXPTIME"] = (exptime, "[s] exposure time")
    header["TELESCOP"] = telescope
    header["INSTRUME"] = instrument
    header["BUNIT"] = "adu"
    header["WAVEMIN"] = (low, "[m] lowest wavelength of the bandpass")
    header["WAVEREF"] = (ref, "[m] reference wavelength")
    header["WAVEMAX"] = (high, "[m] highest wavelength of the bandpass")
    header["ORIGIN"] = "voharvest integration tests (synthetic)"
    return fits.PrimaryHDU(data=data.astype(np.float32), header=header)


def _jpeg(hdu) -> bytes:
    """The image as a grey JPEG: row 0 of the array (south) at the bottom."""
    import numpy as np
    from PIL import Image

    data = hdu.data.astype(np.float64)
    low, high = np.percentile(data, [1.0, 99.5])
    scaled = np.clip((data - low) / (high - low), 0.0, 1.0) ** 0.5
    pixels = (scaled[::-1] * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write(path: Path, content: bytes) -> None:
    if path.exists() and path.read_bytes() == content:
        return
    part = path.with_name(path.name + ".part")
    part.write_bytes(content)
    part.replace(path)


def write_all(inputs: Path) -> list[Path]:
    """Write every image (FITS, and JPEG but for dlimg) under
    ``inputs/<collection>/data``; return the FITS paths."""
    written = []
    for collection, (_, _, bands, targets) in COLLECTIONS.items():
        folder = inputs / collection / "data"
        folder.mkdir(parents=True, exist_ok=True)
        for target in targets:
            for band in bands:
                path = folder / image_name(collection, target, band[0])
                hdu = _image(collection, target, band)
                buffer = io.BytesIO()
                hdu.writeto(buffer)
                _write(path, buffer.getvalue())
                _write(path.with_suffix(".jpg"), _jpeg(hdu))
                written.append(path)
    folder = inputs / "dlimg" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    dlimg_bands = {band[0]: band for band in DLIMG[2]}
    for target, band_name in dlimg_images():
        path = folder / image_name("dlimg", target, band_name)
        hdu = _image(
            "dlimg", target, dlimg_bands[band_name], DLIMG_NAXIS, DLIMG_SCALE, "2010-11", 20.0
        )
        buffer = io.BytesIO()
        hdu.writeto(buffer)
        _write(path, buffer.getvalue())
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_fits.py <inputs-directory>")
    paths = write_all(Path(sys.argv[1]))
    print(f"{len(paths)} images under {sys.argv[1]}")
