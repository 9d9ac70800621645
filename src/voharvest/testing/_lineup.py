"""What the embedded sky offers: its surveys (how each sees the sky) and its services.

The names, titles and roles follow the services of the NASA NAVO notebook
(a Swift/UVOT image service, two SDSS DR7 services on two hosts, a site-wide
SIA 2.0); the identifiers are the sky's own (``ivo://embedded.sky/...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._render import Survey

__all__ = ["BAND_RANGES", "SERVICES", "SURVEYS", "SkyService"]

#: The surveys behind the services (magnitudes: zeropoint in counts per second).
SURVEYS: dict[str, Survey] = {
    "uvot": Survey(
        key="uvot", telescope="Swift (simulated)", instrument="UVOT", band="UVW1",
        tile_deg=0.1, frame_deg=0.25, scale_arcsec=3.0, psf_fwhm_arcsec=2.5,
        zeropoint=24.0, sky=20.0, gain=1.0, phase=0.3,
        spiral_colour=0.8, elliptical_colour=3.0, star_uv=True,
    ),
    "sdss-a": Survey(
        key="sdss-a", telescope="SDSS 2.5m (simulated)", instrument="SDSS camera", band="r",
        tile_deg=0.09, frame_deg=0.22, scale_arcsec=2.4, psf_fwhm_arcsec=1.4,
        zeropoint=26.0, sky=100.0, gain=4.0, phase=0.0,
        spiral_colour=-1.0, elliptical_colour=-1.5,
    ),
    "sdss-b": Survey(
        key="sdss-b", telescope="SDSS 2.5m (simulated)", instrument="SDSS camera", band="r",
        tile_deg=0.1, frame_deg=0.24, scale_arcsec=2.8, psf_fwhm_arcsec=1.5,
        zeropoint=26.0, sky=120.0, gain=4.7, rotation=-23.0, phase=0.55,
        spiral_colour=-1.0, elliptical_colour=-1.5,
    ),
    "sitewide": Survey(
        key="sitewide", telescope="Embedded observatory", instrument="Wide-field imager",
        band="i", tile_deg=0.12, frame_deg=0.3, scale_arcsec=3.2, psf_fwhm_arcsec=2.0,
        zeropoint=25.5, sky=150.0, gain=2.0, phase=0.75,
        spiral_colour=-1.4, elliptical_colour=-1.9,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class SkyService:
    """One service of the sky: its survey, registry entry facts, and protocol."""

    key: str
    survey: str
    protocol: str  # "sia" or "sia2"
    ivoid: str
    short_name: str
    title: str
    description: str
    waveband: tuple[str, ...]
    subjects: tuple[str, ...]
    formats: tuple[str, ...]
    format_preset: str | None = None
    images_per_search: int = 3


SERVICES = (
    SkyService(
        "uvot", "uvot", "sia", "ivo://embedded.sky/swift/uvot", "SwiftUVOT",
        "Swift UVOT ultraviolet images (embedded sky)",
        "Ultraviolet images in the UVW1 band (260 nm) from a simulated Swift UVOT, "
        "FITS frames and JPEG previews of the embedded sky of voharvest.",
        ("uv",), ("ultraviolet astronomy", "swift"), ("image/fits", "image/jpeg"),
    ),
    SkyService(
        "sdss-a", "sdss-a", "sia", "ivo://embedded.sky/skyview/sdssdr7", "SDSSDR7",
        "Sloan Digital Sky Survey DR7, r band (embedded sky, SkyView-like)",
        "SDSS DR7 r-band images of the embedded sky: simulated frames of the Sloan "
        "Digital Sky Survey, FITS and JPEG.",
        ("optical",), ("optical astronomy", "sky surveys"), ("image/fits", "image/jpeg"),
    ),
    SkyService(
        "sdss-b", "sdss-b", "sia", "ivo://embedded.sky/skyserver/dr7", "SDSSDR7",
        "SDSS DR7 Sloan imaging frames (embedded sky, SkyServer-like)",
        "Sloan Digital Sky Survey DR7 corrected frames (r band) of the embedded sky; FITS "
        "only (FORMAT=image/fits is preset in the access URL).",
        ("optical",), ("optical astronomy", "sky surveys"), ("image/fits",),
        format_preset="image/fits", images_per_search=2,
    ),
    SkyService(
        "sitewide", "sitewide", "sia2", "ivo://embedded.sky/siap2/sitewide", "SIA2 sitewide",
        "Embedded observatory site-wide image access (SIA 2.0, DataLink, SODA)",
        "All images of the embedded observatory (i band) through SIA 2.0; each row is a "
        "DataLink document with the FITS file, a JPEG preview and a SODA cutout service.",
        ("optical", "infrared"), ("optical astronomy",), ("image/fits",),
    ),
)  # fmt: skip

# ObsCore em_min, em_max (metres) per band.
BAND_RANGES = {"UVW1": (2.2e-7, 3.0e-7), "r": (5.5e-7, 7.0e-7), "i": (6.9e-7, 8.4e-7)}
