"""A resumed harvest starts each host at the rate the last run learned."""

from __future__ import annotations

from pathlib import Path

from voharvest import ClientConfig, HostPolicy, RetryPolicy, VOClient
from voharvest._config import origin_of
from voharvest.harvesting import HarvestOptions, harvest
from voharvest.harvesting._journal import Journal
from voharvest.testing import HostConfig, VOFarm

CONFIG = ClientConfig(
    retry=RetryPolicy(attempts=5, initial=0.01, maximum=0.02, jitter=0.0),
    host=HostPolicy(rate=200, concurrency=4),
)
TARGETS = [(10.0 + i, 20.0) for i in range(6)]


async def test_the_journal_keeps_where_each_host_ended(tmp_path: Path):
    # Searches on this host get 429 without Retry-After one time in three: a throttle.
    throttling = HostConfig(faults={"429": 0.3}, fault_endpoints=("sia",), retry_after="none")
    out = tmp_path / "out"
    async with VOFarm(hosts=1, config=throttling, seed=3) as farm:
        url = farm.hosts[0].sia1_url
        origin = origin_of(url)
        async with VOClient(CONFIG) as client:
            items = [
                i async for i in harvest(client, [url], TARGETS, max_records=1, download_to=out)
            ]
            ended = client.stats[origin].rate
        assert all(item.ok for item in items)
        assert farm.counters[0].faults["429"] >= 1
        assert ended < 200
        journal = Journal(out)
        await journal.open(HarvestOptions(max_records=1).journal_view())
        try:
            assert (await journal.host_rates()) == {origin: ended}
        finally:
            await journal.close()
        # Run again (nothing left to do): the host starts where it ended.
        async with VOClient(CONFIG) as client:
            again = [
                i async for i in harvest(client, [url], TARGETS, max_records=1, download_to=out)
            ]
            assert client.transport.start_rates == {origin: ended}
            assert client.transport.limiter(url).rate == ended
        assert again == []
