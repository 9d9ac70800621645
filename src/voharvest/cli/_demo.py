"""``voharvest demo``: the NAVO notebook's workflow, end to end, on the embedded sky.

It starts :class:`~voharvest.testing.EmbeddedSky` in this process (on
127.0.0.1, ephemeral ports), points a :class:`~voharvest.ClientConfig` at its
registry and name resolver, and runs the real code paths: registry searches,
SIA searches at M51, a JPEG and a FITS file fetched, the same galaxy measured
in the images of two services, a harvest of a few targets with progress, the
manifest, and the preview. No network beyond loopback is used.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..client import VOClient
from ..harvesting import Harvest, HarvestOptions
from ..harvesting.manifest import write_manifest
from ..services import RegistryResource, SIA2Service, SIAService
from ._progress import Progress, host_summary

__all__ = ["DEMO_TARGETS", "REAL_VO_COMMAND", "run_demo"]

#: The harvest's targets: catalogue names the embedded Sesame resolves.
DEMO_TARGETS = ("M51", "M87", "M101", "NGC 4565", "NGC 891")
REAL_VO_COMMAND = (
    "voharvest harvest --target M51 --servicetype sia --waveband optical --keywords sloan "
    "--size 0.2 --format image/fits --out m51"
)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _services_table(resources: Sequence[RegistryResource]) -> None:
    for resource in resources:
        host = ", ".join(
            i.access_url.split("//", 1)[-1].split("/", 1)[0]
            for i in resource.interfaces
            if i.kind in ("sia", "sia2") and i.access_url
        )
        _say(f"    {resource.short_name:13s} {resource.ivoid:38s} {host}")
        _say(f"    {'':13s} {resource.title}")


def _peak_near(path: Path, ra: float, dec: float, radius_arcsec: float) -> dict[str, Any]:
    """The brightest pixel within ``radius_arcsec`` of (ra, dec), and where the WCS puts it."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(path) as hdus:
        data = np.asarray(hdus[0].data, dtype=float)
        wcs = WCS(hdus[0].header)
        band = hdus[0].header.get("FILTER", "?")
    x0, y0 = wcs.world_to_pixel_values(ra, dec)
    scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
    reach = radius_arcsec / scale
    y, x = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
    inside = (x - x0) ** 2 + (y - y0) ** 2 <= reach**2
    masked = np.where(inside, data, -np.inf)
    py, px = np.unravel_index(int(np.argmax(masked)), data.shape)
    pra, pdec = wcs.pixel_to_world_values(px, py)
    sky = float(np.median(data))
    aperture = (x - px) ** 2 + (y - py) ** 2 <= (30.0 / scale) ** 2
    flux = float(np.sum(data[aperture] - sky)) if aperture.any() else math.nan
    return {
        "pixel": (int(px), int(py)),
        "world": (float(pra), float(pdec)),
        "scale": scale,
        "band": band,
        "flux30": flux,
        "shape": data.shape,
    }


def _separation_arcsec(a: tuple[float, float], b: tuple[float, float]) -> float:
    ra1, dec1, ra2, dec2 = (math.radians(v) for v in (*a, *b))
    cos = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos)))) * 3600.0


async def _notebook(client: VOClient, out: Path) -> list[RegistryResource]:
    """Steps 1-4 of the notebook: registry, M51, a JPEG and a FITS, two services compared."""
    folder = out / "notebook"
    _say("1. Registry: SIA services in the ultraviolet that mention 'swift'")
    _say('   client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])')
    uv = await client.regsearch(servicetype="sia", waveband="uv", keywords=["swift"])
    _services_table(uv)

    m51 = await client.resolve("M51")
    _say(f"2. M51 resolved by the name resolver: RA {m51.ra.deg:.5f}, Dec {m51.dec.deg:.5f}")
    service = uv[0].service("sia")
    assert isinstance(service, SIAService)
    jpegs = await service.search(pos="M51", size=0.2, format="image/jpeg")
    _say(f'   search(pos="M51", size=0.2, format="image/jpeg"): {len(jpegs)} images')
    first = next(iter(jpegs))
    jpeg = await client.download(first, folder)
    _say(f"   {first.getdataurl()}\n     -> {jpeg}")
    fitses = await service.search(pos="M51", size=0.2, format="image/fits")
    fits_path = await client.download(fitses[0], folder)
    _say(f"   the same frame as FITS: {fits_path}")

    _say("3. Registry: optical SIA services that mention 'sloan'")
    _say('   client.regsearch(servicetype="sia", waveband="optical", keywords=["sloan"])')
    sloan = await client.regsearch(servicetype="sia", waveband="optical", keywords=["sloan"])
    _services_table(sloan)
    _say("4. The same galaxy from two services (one has FORMAT=image/fits preset in its URL):")
    ra, dec = float(m51.ra.deg), float(m51.dec.deg)
    measured = []
    for index, resource in enumerate(sloan[:2]):
        sia = resource.service("sia")
        assert isinstance(sia, SIAService)
        found = await sia.search(pos=(ra, dec), size=0.05, format="image/fits")
        path = await client.download(found[0], folder / f"sloan-{index + 1}")
        peak = await asyncio.to_thread(_peak_near, path, ra, dec, 20.0)
        measured.append(peak)
        _say(
            f"   {resource.title}\n     {path}: {peak['shape'][1]}x{peak['shape'][0]} px at "
            f'{peak["scale"]:.2f}"/px, band {peak["band"]}; nucleus at pixel {peak["pixel"]} = '
            f"RA {peak['world'][0]:.5f}, Dec {peak['world'][1]:.5f}"
        )
    if len(measured) == 2:
        apart = _separation_arcsec(measured[0]["world"], measured[1]["world"])
        ratio = measured[1]["flux30"] / measured[0]["flux30"]
        _say(
            f'   the two nuclei are {apart:.1f}" apart on the sky (pixels of '
            f'{measured[0]["scale"]:.1f}" and {measured[1]["scale"]:.1f}"); '
            f'flux within 30": ratio {ratio:.2f}'
        )
    return [*uv, *sloan]


async def _cutout(client: VOClient, resource: RegistryResource, out: Path) -> None:
    """Step 5: a SODA cutout of M51 through the DataLink document of a site-wide SIA 2.0 row."""
    _say("5. A site-wide SIA 2.0 service: its rows are DataLink documents, with SODA cutouts")
    _say('   client.regsearch(servicetype="sia2") ->')
    _services_table([resource])
    service = resource.service("sia2")
    assert isinstance(service, SIA2Service)
    found = await service.search(pos=("M51", 0.05), format="image/fits")
    record = next(iter(found))
    folder = out / "notebook" / "cutout"
    cut = await client.download(record, folder, cutout="3arcmin", position="M51")
    full = await client.download(record, out / "notebook" / "full")
    _say(
        f"   a 3 arcmin cutout of M51: {cut} ({cut.stat().st_size:,} bytes; "
        f"the full frame is {full.stat().st_size:,})"
    )


async def _harvest(client: VOClient, out: Path, services: list[Any], progress: bool) -> int:
    _say(f"6. Harvest: {len(DEMO_TARGETS)} targets x {len(services)} services, FITS, resumable")
    options = HarvestOptions(size=0.1, search_format="image/fits", max_records=1)
    run = Harvest(client, services, list(DEMO_TARGETS), options, download_to=out)
    bars = Progress(searches_total=len(DEMO_TARGETS) * len(run.totals)) if progress else None
    failed = 0
    async for item in run:
        if not item.ok:
            failed += 1
            print(f"failed {item.kind} {item.service} / {item.target}: {item.error}",
                  file=sys.stderr)  # fmt: skip
        if bars is not None:
            bars.update(item, 0)
    if bars is not None:
        bars.close(0)
    await asyncio.to_thread(write_manifest, out)
    return failed


async def run_demo(out: Path, *, progress: bool = True) -> int:
    """The whole demo into ``out``; 0 when everything worked."""
    from ..testing import EmbeddedSky

    started = time.monotonic()
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    async with EmbeddedSky() as sky:
        _say("The embedded sky (a simulated VO on this machine, no internet needed):")
        _say(f"    registry  {sky.registry_url}")
        _say(f"    names     {sky.sesame_url}")
        _say()
        async with VOClient(sky.client_config()) as client:
            found = await _notebook(client, out)
            sitewide = await client.regsearch(servicetype="sia2")
            await _cutout(client, sitewide[0], out)
            harvest_out = out / "harvest"
            failed = await _harvest(client, harvest_out, [*found, *sitewide], progress)
            summary = host_summary(client.stats)
    print(summary, file=sys.stderr)
    from ._preview import contact_sheet

    preview = out / "preview.png"
    sheet = await asyncio.to_thread(contact_sheet, harvest_out, preview)
    elapsed = time.monotonic() - started
    _say()
    _say(f"Done in {elapsed:.1f} s. What is where:")
    _say(f"    {out / 'notebook'}    the JPEG, FITS and cutout files of steps 2-5")
    _say(f"    {harvest_out}     the harvest: <service>/<target>/<file>, and its journal")
    _say(f"    {harvest_out / 'manifest.csv'}  (and manifest.xml): one row per file")
    _say(
        f"    {preview}  {len(sheet.targets)} targets x {len(sheet.services)} services"
        + (f", {sheet.skipped} files that are not images skipped" if sheet.skipped else "")
    )
    _say(f"    voharvest status {harvest_out}")
    _say()
    _say("The same against the real VO (needs the internet):")
    _say(f"    {REAL_VO_COMMAND}")
    return 0 if failed == 0 and sheet.cells else 1
