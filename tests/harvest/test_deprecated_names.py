"""Old public names still work, with a DeprecationWarning naming what replaces them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from tests.harvest.minisky import MiniSky
from tests.servers import LocalServer
from voharvest import ClientConfig, Cutout, HostPolicy, ParameterError, VOClient
from voharvest.harvesting import HarvestItem, HarvestOptions, HarvestTotals, harvest
from voharvest.naming import dataset_filename
from voharvest.protocol.datalink import Dataset


def test_harvest_options_take_and_give_the_old_format_names():
    with pytest.warns(DeprecationWarning, match="search_format"):
        old = HarvestOptions(format="image/fits")
    with pytest.warns(DeprecationWarning, match="keep_formats"):
        kept = HarvestOptions(formats="image/*")
    assert old == HarvestOptions(search_format="image/fits")
    assert kept == HarvestOptions(keep_formats=("image/*",))
    with pytest.warns(DeprecationWarning, match="HarvestOptions.format is deprecated"):
        assert old.format == "image/fits"
    with pytest.warns(DeprecationWarning, match="HarvestOptions.formats is deprecated"):
        assert kept.formats == ("image/*",)
    # The journal keeps its keys: journals of earlier versions resume.
    assert old.journal_view() == {
        "size": 0.1,
        "format": "image/fits",
        "formats": ["image/fits"],
        "max_records": None,
    }
    assert dataclasses.replace(old, size=0.2).search_format == "image/fits"
    with pytest.warns(DeprecationWarning), pytest.raises(ParameterError, match="not both"):
        HarvestOptions(format="image/fits", search_format="image/png")


def test_the_skipped_counts_are_the_two_things_they_were():
    on_disk = HarvestItem("download", "s", "t", found_on_disk=True)
    uncut = HarvestItem("download", "s", "t", nothing_to_cut=True)
    with pytest.warns(DeprecationWarning, match="found_on_disk or nothing_to_cut"):
        assert on_disk.skipped and uncut.skipped
    with pytest.warns(DeprecationWarning):
        assert not HarvestItem("download", "s", "t").skipped
    with pytest.warns(DeprecationWarning, match="found_on_disk \\+ nothing_to_cut"):
        assert HarvestTotals(found_on_disk=2, nothing_to_cut=1).skipped == 3


async def test_harvest_takes_the_old_keywords(server: LocalServer, tmp_path: Path):
    MiniSky(server, per_search=1)
    config = ClientConfig(host=HostPolicy(rate=math.inf))
    async with VOClient(config) as client:
        with pytest.warns(DeprecationWarning, match="search_format"):
            run = harvest(client, server.url("/sia"), [(10.0, 20.0)], format="image/fits")
        assert run.options.search_format == "image/fits"
        with pytest.raises(TypeError, match="fromat"):
            harvest(client, server.url("/sia"), [(10.0, 20.0)], fromat="image/fits")


def test_a_dataset_name_and_a_cutout_journal_view_are_deprecated():
    dataset = Dataset(url="https://h/x.fits?ID=1", format="image/fits", via=None)
    with pytest.warns(DeprecationWarning, match="dataset_filename"):
        assert dataset.name == dataset_filename(dataset)
    with pytest.warns(DeprecationWarning, match="journal_view"):
        view = Cutout.circle(0.05).journal_view()
    assert view == HarvestOptions(cutout=Cutout.circle(0.05)).journal_view()["cutout"]
