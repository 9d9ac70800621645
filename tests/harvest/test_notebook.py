"""The reference workflow (NASA NAVO notebook), end to end on simulated hosts.

Registry search by servicetype + waveband + keywords -> two SDSS-like services on
two hosts (one with FORMAT=image/fits baked into its access URL, failing on any
other FORMAT) -> SIA searches around M51 -> FITS downloads -> the FITS open with
astropy and their WCS covers the position.
"""

from __future__ import annotations

import math
from pathlib import Path

from astropy.io import fits
from astropy.wcs import WCS

from voharvest import ClientConfig, HostPolicy, RegistryEndpoint, RetryPolicy, VOClient, harvest
from voharvest.testing import HostConfig, VOFarm

M51 = (202.4696292, 47.1952583)


async def test_registry_to_fits_on_two_sloan_hosts(tmp_path: Path):
    sdss = HostConfig(title="SDSS DR7 sloan images", images_per_search=2, image_bytes=40_000)
    preset = HostConfig(
        title="SDSS DR7 sloan mirror",
        images_per_search=2,
        image_bytes=40_000,
        sia1_format_preset="image/fits",
    )
    other = HostConfig(title="2MASS near infrared", waveband="infrared")
    async with VOFarm(hosts=3, config=sdss, per_host={1: preset, 2: other}) as farm:
        config = ClientConfig(
            registries=(RegistryEndpoint(farm.registry_url),),
            retry=RetryPolicy(attempts=2, initial=0.01, jitter=0.0),
            host=HostPolicy(rate=50, concurrency=4),
        )
        out = tmp_path / "m51"
        async with VOClient(config) as client:
            services = await client.regsearch(
                servicetype="sia", waveband="optical", keywords=["sloan"]
            )
            assert sorted(s.title for s in services) == [
                "SDSS DR7 sloan images",
                "SDSS DR7 sloan mirror",
            ]
            # The notebook's look at what was found, and its pick by short name.
            summary = services.to_table()["ivoid", "short_name", "res_title"]
            assert sorted(summary["res_title"]) == sorted(s.title for s in services)
            for row in summary:
                assert services[row["short_name"]].ivoid == row["ivoid"]
            # The mirror's access URL carries FORMAT=image/fits: a user asking for ALL
            # still gets an answer, because the preset is not sent a second time.
            mirror = next(s for s in services if "mirror" in s.title)
            assert "FORMAT=image/fits" in mirror.access_url("sia")
            listing = await mirror.service("sia").search(pos=M51, size=0.2, format="ALL")
            assert len(listing) >= 1

            items = [
                item
                async for item in harvest(
                    client, services, [M51], size=0.2, search_format="image/fits", download_to=out
                )
            ]
        assert all(item.ok for item in items), [i.error for i in items if not i.ok]
        downloads = [i for i in items if i.kind == "download"]
        assert len(downloads) == 4
        covering = set()
        for item in downloads:
            with fits.open(item.path) as hdus:
                wcs = WCS(hdus[0].header)
                ny, nx = hdus[0].data.shape
                x, y = wcs.world_to_pixel_values(*M51)
            distance = math.hypot(
                (wcs.wcs.crval[0] - M51[0]) * math.cos(math.radians(M51[1])),
                wcs.wcs.crval[1] - M51[1],
            )
            assert distance < 0.3  # every image is of the field around M51
            if -0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5:
                covering.add(item.service)
        # Each service delivered an image whose WCS footprint holds M51.
        assert len(covering) == 2
        hosts = {item.url.split("/")[2] for item in downloads}
        assert len(hosts) == 2  # one from each service
        for index in (0, 1):
            counters = farm.counters[index]
            assert counters.rate_violations == 0
            assert all(n == 1 for n in counters.completed_image_fetches.values())
        assert farm.counters[2].image_fetches == {}
