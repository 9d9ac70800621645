"""`voharvest demo` as a newcomer runs it, and what it leaves: files, manifest, preview.

The demo runs once (in a subprocess, as the README's first command does) and
the tests read what it left: a JPEG and a FITS file of one frame, two FITS
files of M51 from two services, a harvest with its manifest, and the preview.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from tests.cli.inprocess import voharvest_here_sync
from voharvest.testing import GALAXIES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "voharvest", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return out, done.stdout


def _galaxy(name: str) -> tuple[float, float]:
    found = next(g for g in GALAXIES if g.name == name)
    return found.ra, found.dec


def _smoothed(pixels: np.ndarray) -> np.ndarray:
    """A 3x3 box mean: the brightest source, not the brightest noise spike."""
    padded = np.pad(pixels.astype(float), 1, mode="edge")
    total = sum(
        padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    return np.asarray(total) / 9.0


def test_the_demo_leaves_jpeg_fits_manifest_and_preview(demo: tuple[Path, str]):
    out, text = demo
    jpegs = sorted(out.rglob("*.jpg"))
    assert jpegs
    with Image.open(jpegs[0]) as picture:
        assert picture.format == "JPEG"
        assert min(picture.size) >= 100
    harvested = sorted((out / "harvest").rglob("*.fits"))
    assert len(harvested) == 20  # 5 targets x 4 services, one frame each
    for path in harvested:
        with fits.open(path) as hdus:
            assert hdus[0].data.ndim == 2
            assert WCS(hdus[0].header).has_celestial
    with (out / "harvest" / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20
    assert {row["state"] for row in rows} == {"done"}
    assert all((out / "harvest" / row["path"]).is_file() for row in rows)
    with Image.open(out / "preview.png") as preview:
        assert preview.format == "PNG"
        assert preview.size[0] > 800
    # Where things are, and the command for the real VO.
    assert str(out / "preview.png") in text
    assert "voharvest harvest --target M51 --servicetype sia" in text


def test_fits_and_jpeg_of_a_frame_show_the_brightest_source_at_one_place(demo: tuple[Path, str]):
    out, _ = demo
    jpeg = next((out / "notebook").glob("*.jpg"))
    frame = jpeg.with_suffix(".fits")
    with fits.open(frame) as hdus:
        data = np.asarray(hdus[0].data, dtype=float)
        wcs = WCS(hdus[0].header)
    with Image.open(jpeg) as picture:
        shown = np.asarray(picture.convert("L"), dtype=float)
    assert shown.shape == data.shape
    # The JPEG is drawn as a viewer shows the FITS: its first row is the FITS's last.
    shown = shown[::-1]
    fy, fx = np.unravel_index(int(np.argmax(_smoothed(data))), data.shape)
    jy, jx = np.unravel_index(int(np.argmax(_smoothed(shown))), shown.shape)
    assert abs(int(fx) - int(jx)) <= 1 and abs(int(fy) - int(jy)) <= 1
    # ... so the same sky position, through the frame's WCS.
    fits_sky = wcs.pixel_to_world(fx, fy)
    jpeg_sky = wcs.pixel_to_world(jx, jy)
    scale = abs(wcs.proj_plane_pixel_scales()[0].to_value("arcsec"))
    assert fits_sky.separation(jpeg_sky).arcsec <= 1.5 * scale


@pytest.mark.parametrize("name", ["M51", "NGC 5195"])
def test_two_services_show_a_galaxy_where_their_wcs_put_it(demo: tuple[Path, str], name: str):
    out, _ = demo
    ra, dec = _galaxy(name)
    frames = [next((out / "notebook" / f"sloan-{i}").glob("*.fits")) for i in (1, 2)]
    seen = []
    for frame in frames:
        with fits.open(frame) as hdus:
            data = np.asarray(hdus[0].data, dtype=float)
            wcs = WCS(hdus[0].header)
            sky, noise = float(np.median(data)), float(np.sqrt(hdus[0].header["SKYLEVEL"]))
        x, y = wcs.world_to_pixel_values(ra, dec)
        assert 10 <= x <= data.shape[1] - 10 and 10 <= y <= data.shape[0] - 10
        # The brightest pixel within 8 pixels of where the WCS puts the galaxy ...
        yy, xx = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
        near = (xx - x) ** 2 + (yy - y) ** 2 <= 8**2
        py, px = np.unravel_index(int(np.argmax(np.where(near, data, -np.inf))), data.shape)
        # ... is the galaxy's nucleus, on that very pixel (within one), far above the sky.
        assert abs(px - x) <= 1.0 and abs(py - y) <= 1.0
        assert data[py, px] > sky + 50 * noise
        seen.append(wcs.pixel_to_world(px, py))
        pixel_scales = wcs.proj_plane_pixel_scales()
    # The two services' pixels differ (scale, rotation); the nucleus is one place on the sky.
    assert seen[0].separation(seen[1]).arcsec < 2 * pixel_scales[0].to_value("arcsec")
    matrices = [WCS(fits.getheader(frame)).pixel_scale_matrix for frame in frames]
    assert not np.allclose(matrices[0], matrices[1])


def test_the_preview_has_a_row_per_target_and_a_column_per_service(demo: tuple[Path, str]):
    from voharvest.cli._preview import build_figure, read_sheet

    out, _ = demo
    sheet = read_sheet(out / "harvest")
    assert sheet.targets == ["M51", "M87", "M101", "NGC 4565", "NGC 891"]
    assert len(sheet.services) == 4
    figure = build_figure(sheet)
    grid = {}
    for axis in figure.axes:
        spec = axis.get_subplotspec()
        grid[(spec.rowspan.start, spec.colspan.start)] = axis
    assert set(grid) == {(r, c) for r in range(5) for c in range(4)}
    for (row, column), axis in grid.items():
        target, service = axis.get_gid().split("|")
        assert target == sheet.targets[row]
        assert service == sheet.services[column]
        assert axis.images, f"no image drawn for {target} / {service}"
        if column == 0:
            assert axis.get_ylabel() == target
        if row == 0:
            assert axis.get_title().replace("\n", " ") == sheet.titles[service]
    titles = " ".join(sheet.titles.values())
    assert "Swift UVOT" in titles and "Sloan" in titles


def test_the_preview_skips_files_that_are_not_images(
    demo: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out, _ = demo
    copy = tmp_path / "harvest"
    shutil.copytree(out / "harvest", copy)
    with (copy / "manifest.csv").open() as handle:
        first = next(csv.DictReader(handle))  # M51 from the first service: inside the limits
    victim = copy / first["path"]
    victim.write_text("<html>not an image</html>")
    # main() in this process: the command's output is in question here, not its process.
    code, _, err = voharvest_here_sync(
        capsys, "preview", copy, "-o", tmp_path / "p.png", "--targets", "2", "--services", "3"
    )
    assert code == 0, err
    assert "2 targets x 3 services" in err
    assert "1 files that are not images skipped" in err
    assert Image.open(io.BytesIO((tmp_path / "p.png").read_bytes())).format == "PNG"


def test_status_piped_into_head_exits_0_without_a_traceback(demo: tuple[Path, str]):
    out, _ = demo
    command = [sys.executable, "-m", "voharvest", "status", str(out / "harvest")]
    # A reader that is gone before anything is written: every write meets a broken pipe.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 0
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr
    # And as a user types it.
    shell = subprocess.run(
        f"set -o pipefail; {' '.join(map(repr, command))} | head -1",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.startswith("sia")
    assert "Traceback" not in shell.stderr
