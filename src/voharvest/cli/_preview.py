"""``voharvest preview``: a contact sheet of the harvested FITS (zscale) and JPEG images."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..harvesting._journal import open_readonly

__all__ = ["contact_sheet"]

_IMAGE_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".jpg", ".jpeg", ".png")


def _pixels(path: Path) -> np.ndarray | None:
    """A 2-D (or RGB) array to show, or None if the file holds no image."""
    name = path.name.lower()
    if name.endswith((".jpg", ".jpeg", ".png")):
        from matplotlib import image

        return np.asarray(image.imread(path))
    from astropy.io import fits
    from astropy.visualization import ZScaleInterval

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
                finite = plane[np.isfinite(plane)]
                if finite.size == 0:
                    return None
                low, high = ZScaleInterval().get_limits(finite)
                if high <= low:
                    high = low + 1
                scaled: np.ndarray = np.clip((plane - low) / (high - low), 0, 1)
                return scaled
    return None


def contact_sheet(directory: Path, output: Path, *, limit: int = 48, columns: int = 6) -> int:
    """Draw up to ``limit`` downloaded images of the harvest in ``directory``; return how many."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    db = open_readonly(directory)
    try:
        rows = list(
            db.execute(
                "SELECT r.path, coalesce(r.target_label, r.target), r.service FROM records AS r"
                " WHERE r.state = 'done' ORDER BY r.id"
            )
        )
    finally:
        db.close()
    shown: list[tuple[np.ndarray, str]] = []
    for relative, target, service in rows:
        path = directory / relative
        if not path.name.lower().endswith(_IMAGE_SUFFIXES) or not path.is_file():
            continue
        try:
            pixels = _pixels(path)
        except (OSError, ValueError):
            continue
        if pixels is None:
            continue
        host = service.split("//", 1)[-1].split("/", 1)[0]
        shown.append((pixels, f"{target}\n{host}"))
        if len(shown) >= limit:
            break
    if not shown:
        return 0
    columns = min(columns, len(shown))
    rows_needed = math.ceil(len(shown) / columns)
    figure, axes = plt.subplots(
        rows_needed, columns, figsize=(2.4 * columns, 2.6 * rows_needed), squeeze=False
    )
    for axis in axes.flat:
        axis.axis("off")
    for axis, (pixels, label) in zip(axes.flat, shown, strict=False):
        axis.imshow(pixels, cmap="gray", origin="lower" if pixels.ndim == 2 else "upper")
        axis.set_title(label, fontsize=7)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part.png")
    figure.savefig(partial, dpi=100)
    plt.close(figure)
    partial.replace(output)
    return len(shown)
