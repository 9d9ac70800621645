"""``voharvest preview``: one row per target, one column per service.

Each cell shows the first image a service gave for a target (a FITS file when
there is one: it carries the WCS), stretched for display with
:mod:`astropy.visualization` (the lower ZScale limit, the 99.99th percentile
on top, an asinh stretch, so a galaxy's core and its faint disk both show). The
target's position is marked where the image's WCS puts it, and arrows show
north and east. Column headings give the service's title, each cell its band
and format. Files that hold no image (a DataLink document, an HTML page, a
table) are skipped and counted.
"""

from __future__ import annotations

import json
import math
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..harvesting import open_readonly

__all__ = ["Sheet", "build_figure", "contact_sheet", "read_sheet"]

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
_PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Cell:
    """What one (target, service) cell shows."""

    path: Path
    pixels: np.ndarray
    wcs: Any  # astropy WCS or None
    band: str
    format: str


@dataclass
class Sheet:
    """The grid to draw: targets (rows), services (columns) and the cells between."""

    targets: list[str] = field(default_factory=list)
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    skipped: int = 0  # files that hold no image
    left_out: int = 0  # images beyond the row or column limit


def _read_fits(path: Path) -> tuple[np.ndarray, Any, str] | None:
    from astropy.io import fits
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, memmap=False) as hdus:
            for hdu in hdus:
                data = getattr(hdu, "data", None)
                if data is None or getattr(data, "ndim", 0) < 2:
                    continue
                plane = np.asarray(data, dtype=float)
                while plane.ndim > 2:
                    plane = plane[0]
                if not np.isfinite(plane).any():
                    return None
                try:
                    wcs = WCS(hdu.header, naxis=2)
                    wcs = wcs if wcs.has_celestial else None
                except Exception:  # a header astropy can't read as a WCS: show it without
                    wcs = None
                band = str(hdu.header.get("FILTER", hdu.header.get("BANDPASS", "")) or "")
                return plane, wcs, band
    return None


def _read_picture(path: Path) -> np.ndarray | None:
    from matplotlib import image

    pixels = np.asarray(image.imread(path))
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2)
    if pixels.ndim != 2:
        return None
    # Pictures come top row first; flip so that every cell is drawn with origin="lower".
    flipped: np.ndarray = pixels[::-1].astype(float)
    return flipped


def _cell(path: Path, record_format: str | None, waveband: str) -> Cell | None:
    name = path.name.lower()
    try:
        if name.endswith(_FITS_SUFFIXES):
            found = _read_fits(path)
            if found is None:
                return None
            pixels, wcs, band = found
            return Cell(path, pixels, wcs, band or waveband, "FITS")
        if name.endswith(_PICTURE_SUFFIXES):
            picture = _read_picture(path)
            if picture is None:
                return None
            kind = "PNG" if name.endswith(".png") else "JPEG"
            return Cell(path, picture, None, waveband, kind)
    except (OSError, ValueError, SyntaxError):  # unreadable, or not what its name says
        return None
    return None


def read_sheet(directory: Path, *, max_targets: int = 8, max_services: int = 6) -> Sheet:
    """The cells of a harvest's preview: at most ``max_targets`` rows, ``max_services`` columns."""
    db = open_readonly(directory)
    try:
        rows = list(
            db.execute(
                "SELECT path, service, target, coalesce(target_label, target), format"
                " FROM records WHERE state = 'done' AND kind = 'file' ORDER BY id"
            )
        )
        positions = {
            (service, target): (ra, dec)
            for service, target, ra, dec in db.execute(
                "SELECT service, target, ra, dec FROM searches WHERE ra IS NOT NULL"
            )
        }
        meta = db.execute("SELECT value FROM meta WHERE key = 'services'").fetchone()
    finally:
        db.close()
    described: dict[str, dict[str, str]] = json.loads(meta[0]) if meta else {}
    sheet = Sheet()
    for relative, service, target, label, record_format in rows:
        facts = described.get(service, {})
        if label not in sheet.targets:
            if len(sheet.targets) >= max_targets:
                sheet.left_out += 1
                continue
            sheet.targets.append(label)
        if service not in sheet.services:
            if len(sheet.services) >= max_services:
                sheet.left_out += 1
                continue
            sheet.services.append(service)
            label_of = facts.get("label") or relative.split("/", 1)[0]
            sheet.titles[service] = facts.get("title") or label_of
        if (service, target) in positions:
            sheet.positions.setdefault(label, positions[(service, target)])
        path = directory / relative
        if not path.is_file():
            continue
        cell = _cell(path, record_format, facts.get("waveband", ""))
        if cell is None:
            sheet.skipped += 1
            continue
        held = sheet.cells.get((label, service))
        if held is None or (held.wcs is None and cell.wcs is not None):
            sheet.cells[(label, service)] = cell  # a FITS with a WCS beats a picture
    return sheet


def _limits(pixels: np.ndarray) -> tuple[float, float]:
    from astropy.visualization import ZScaleInterval

    finite = pixels[np.isfinite(pixels)]
    low, high = ZScaleInterval().get_limits(finite)
    top = float(np.percentile(finite, 99.99))
    high = max(high, top)
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def _compass(
    axis: Any, wcs: Any, shape: tuple[int, ...], target: tuple[float, float] | None
) -> None:
    """North and east arrows from the WCS, in the corner farthest from the target."""
    ny, nx = shape[:2]
    corners = [(fx * nx, fy * ny) for fy in (0.2, 0.8) for fx in (0.8, 0.2)]
    if target is not None:
        corners.sort(key=lambda c: -math.hypot(c[0] - target[0], c[1] - target[1]))
    x0, y0 = corners[0]
    length = 0.1 * min(nx, ny)
    ra, dec = wcs.pixel_to_world_values(x0, y0)
    step = 1.0 / 60.0  # one arcminute, to find the directions
    for name, (dra, ddec) in (
        ("N", (0.0, step)),
        ("E", (step / max(math.cos(math.radians(float(dec))), 1e-6), 0.0)),
    ):
        x1, y1 = wcs.world_to_pixel_values(float(ra) + dra, float(dec) + ddec)
        dx, dy = float(x1) - x0, float(y1) - y0
        norm = math.hypot(dx, dy) or 1.0
        ux, uy = dx / norm * length, dy / norm * length
        axis.annotate(
            "",
            xy=(x0 + ux, y0 + uy),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "yellow", "lw": 1.2},
        )
        axis.text(
            x0 + 1.35 * ux, y0 + 1.35 * uy, name, color="yellow", fontsize=7,
            ha="center", va="center",
        )  # fmt: skip


def build_figure(sheet: Sheet) -> Any:
    """The matplotlib Figure of a sheet: ``len(targets)`` rows by ``len(services)`` columns."""
    from astropy.visualization import AsinhStretch, ImageNormalize
    from matplotlib.figure import Figure

    rows, columns = len(sheet.targets), len(sheet.services)
    figure = Figure(figsize=(2.6 * columns + 0.6, 2.6 * rows + 0.9))
    axes = figure.subplots(rows, columns, squeeze=False)
    for row, target in enumerate(sheet.targets):
        for column, service in enumerate(sheet.services):
            axis = axes[row][column]
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_gid(f"{target}|{service}")
            if row == 0:
                title = textwrap.fill(sheet.titles.get(service, service), 34)
                axis.set_title(title, fontsize=7)
            if column == 0:
                axis.set_ylabel(target, fontsize=9)
            cell = sheet.cells.get((target, service))
            if cell is None:
                axis.set_facecolor("0.85")
                axis.text(0.5, 0.5, "no image", ha="center", va="center",
                          fontsize=7, transform=axis.transAxes)  # fmt: skip
                continue
            low, high = _limits(cell.pixels)
            norm = ImageNormalize(vmin=low, vmax=high, stretch=AsinhStretch(0.03), clip=True)
            axis.imshow(cell.pixels, cmap="gray", origin="lower", norm=norm,
                        interpolation="nearest")  # fmt: skip
            band = f"{cell.band} · " if cell.band else ""
            note = f"{band}{cell.format}"
            position = sheet.positions.get(target)
            marked: tuple[float, float] | None = None
            if cell.wcs is not None and position is not None:
                x, y = cell.wcs.world_to_pixel_values(*position)
                marked = (float(x), float(y))
                ny, nx = cell.pixels.shape
                if -0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5:
                    radius = 0.06 * min(nx, ny)
                    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        axis.plot(
                            [x + dx * radius, x + dx * 2.2 * radius],
                            [y + dy * radius, y + dy * 2.2 * radius],
                            color="red", lw=1.0,
                        )  # fmt: skip
                else:
                    note += " · target outside"
                _compass(axis, cell.wcs, cell.pixels.shape, marked)
            elif cell.wcs is None:
                note += " · no WCS"
            axis.set_xlim(-0.5, cell.pixels.shape[1] - 0.5)
            axis.set_ylim(-0.5, cell.pixels.shape[0] - 0.5)
            axis.text(0.03, 0.03, note, color="white", fontsize=6, transform=axis.transAxes,
                      bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})  # fmt: skip
    figure.suptitle(
        "voharvest preview: rows are targets, columns are services; red: the target "
        "(from the WCS), arrows: north and east",
        fontsize=8,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    return figure


def contact_sheet(
    directory: Path, output: Path, *, max_targets: int = 8, max_services: int = 6
) -> Sheet:
    """Draw the preview of the harvest in ``directory`` into the PNG ``output``."""
    sheet = read_sheet(directory, max_targets=max_targets, max_services=max_services)
    if not sheet.cells:
        return sheet
    figure = build_figure(sheet)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part.png")
    figure.savefig(partial, dpi=100)
    partial.replace(output)
    return sheet
