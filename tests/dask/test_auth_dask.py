"""Credentials reach Dask workers from their own environment, never through the task graph.

The worker process gets ``VOHARVEST_TOKEN_FILE`` in its environment (the
driver has none); the configuration says only ``Credentials.from_env()``.
The harvest against a token-protected farm host succeeds, and the pickled
configuration carries no secret. Credentials given in code are refused up
front with a clear error instead of being pickled in clear.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from tests.dask.farm import FarmProcess
from voharvest import (
    AuthenticationError,
    BearerToken,
    ClientConfig,
    Credentials,
    HostPolicy,
    ParameterError,
)
from voharvest.dask import DaskHarvest, harvest_on_dask
from voharvest.harvesting import HarvestOptions

distributed = pytest.importorskip("distributed")

TOKEN = "tok-dask-5521-secret"


def test_credentials_given_in_code_are_refused_before_anything_is_sent(tmp_path: Path):
    config = ClientConfig(
        credentials=Credentials(entries=(BearerToken("https://a.example", TOKEN),))
    )
    with pytest.raises(ParameterError, match="never travel to Dask workers"):
        DaskHarvest(
            None, ["http://127.0.0.1:1/sia"], [(1.0, 2.0)], HarvestOptions(),
            download_to=tmp_path, config=config,
        )  # fmt: skip


@pytest.mark.slow
def test_workers_read_the_token_from_their_own_environment(tmp_path: Path) -> None:
    assert "VOHARVEST_TOKEN_FILE" not in os.environ
    farm_config = {"auth": {"method": "token", "secret": TOKEN}, "images_per_search": 1}
    with FarmProcess(hosts=1, **farm_config) as farm:
        host = farm.hosts[0]
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        config = ClientConfig(
            host=HostPolicy(rate=50, concurrency=4), credentials=Credentials.from_env()
        )
        assert TOKEN.encode() not in pickle.dumps(config)
        env = {"VOHARVEST_TOKEN_FILE": f"{host['base_url']}={token_file}"}
        with (
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=":0", env=env,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):  # fmt: skip
            run = harvest_on_dask(
                client, [host["sia1_url"]], [(10.0, 20.0), (40.0, -5.0)],
                download_to=tmp_path / "out", size=0.2, search_format="image/fits",
                config=config, partitions=2,
            )  # fmt: skip
            items: list[Any] = list(run)
        # The control: the same harvest from a worker without the variable is refused.
        with (
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=":0",
            ) as cluster,
            distributed.Client(cluster) as client,
        ):  # fmt: skip
            refused = list(
                harvest_on_dask(
                    client, [host["sia1_url"]], [(10.0, 20.0)],
                    download_to=tmp_path / "bare", size=0.2, search_format="image/fits",
                    config=config, partitions=1,
                )
            )  # fmt: skip
    assert items and all(item.ok for item in items), [i.error for i in items if not i.ok]
    assert sum(item.kind == "download" for item in items) == 2
    assert refused and all(isinstance(i.error, AuthenticationError) for i in refused)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != token_file:
            assert TOKEN.encode() not in path.read_bytes(), path
