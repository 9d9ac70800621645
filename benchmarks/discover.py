"""Benchmark: global image discovery for many targets over a VO of 20 rate-limited services.

``python -m benchmarks.discover [--targets 10000 --latency 0.05 --rate 10]
[--pyvo-sample 20] [--harvest-sample 200] [--smoke] [--out DIR]``

A VOFarm runs in a process of its own as a VO for discovery
(``python -m voharvest.testing serve --vo discovery``): 20 services on 17 sites
with survey stripes and pointed fields for footprints, mostly disjoint; four
ObsCore TAP services (one refusing uploads), eight SIA 2.0 (one refusing
several POS per request), nine SIA 1.0 interfaces; three ``isservedby``
relationships; every data host enforcing ``--rate`` requests/s (the registry,
host 0, is not limited). The targets are ``--targets`` positions spread over the
sky (``|Dec| < 58``), each searched with a radius of ``--radius`` degrees. The
farm is started afresh for each contender, so its counters are that contender's.

- **pyvo.discover**: ``pyvo.discover.images_globally(space=(ra, dec, r))`` per
  target, one after another, on the first ``--pyvo-sample`` targets; its
  requests and makespan are scaled to all targets.
- **plain harvest**: one request per (service, target): ``voharvest.harvest``
  over the SIA services (each by its best SIA interface) and, for the ObsCore
  services, which a harvest does not speak, one TAP query per target through
  the same client, polite per host. Its requests are N x S exactly; its
  makespan is measured on the first ``--harvest-sample`` targets and scaled.
- **voharvest discover**: ``VOClient.discover(targets, size=r)`` over all targets.

Datasets are (target, access URL) pairs, a URL compared by host and path (each
contender has a farm of its own, on new ports). The farm is deterministic, so the
pairs a plain harvest of all targets finds are computed from the lineup's
footprints; the measured sample checks that computation (record counts and
ObsCore URLs). Goal: discover finds the same datasets in at most 1/20 of the
plain harvest's requests and 1/10 of its makespan, with no rate violations.

Writes ``discover.json``, ``discover.md`` and ``discover.png`` into ``--out``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import _harness, _report
from benchmarks._harness import CpuSpan, Farm

#: Goals of issue 18: discover's requests and makespan against the plain harvest's.
REQUESTS_RATIO = 1 / 20
MAKESPAN_RATIO = 1 / 10

SMOKE = {
    "targets": 300,
    "latency": 0.01,
    "rate": 20.0,
    "burst": 3.0,
    "pyvo_sample": 2,
    "harvest_sample": 6,
}
OPTIONS = {
    "targets": (10_000, "targets in all"),
    "radius": (0.05, "search radius in degrees"),
    **_harness.workload(latency=0.05, concurrency=4, workers=32, seed=0),
    "rate": (10.0, "requests/s per data host"),
    "burst": (2.0, "the hosts' token bucket size"),
    "pyvo_sample": (50, "targets pyvo.discover runs, scaled to all"),
    "harvest_sample": (200, "targets the plain harvest runs, scaled to all"),
    "intersect": ("overlaps", "discover's coverage test (covers: pyvo's)"),
}

#: How the plain harvest asks each service: its most capable interface.
_PREFERENCE = ("obscore", "sia2", "sia1")


def _farm_options(args: Any) -> list[str]:
    return [
        "--vo", "discovery", "--hosts", "18", "--seed", str(args.seed),
        "--latency", str(args.latency), "--rate", str(args.rate), "--burst", str(args.burst),
        "--formats", "image/fits", "--per-host", json.dumps({"0": {"rate_limit": None}}),
    ]  # fmt: skip


def targets(count: int) -> list[tuple[float, float]]:
    return _harness.positions(count)


def sample_of(count: int, size: int) -> list[int]:
    """``size`` target indices spread evenly over ``count`` (the spiral covers the sky in order)."""
    size = max(1, min(size, count))
    return [index * count // size for index in range(size)]


# --- what a plain harvest of all targets finds, from the lineup -------------------------------


def dataset_key(ready: dict[str, Any], url: str) -> str:
    """An access URL as ``host<i>/images/<tile>.fits``: the same on every start of the farm."""
    for host in ready["hosts"]:
        if url.startswith(host["base_url"] + "/"):
            return f"host{host['index']}{url[len(host['base_url']) :]}"
    return url


def _services(ready: dict[str, Any]) -> list[dict[str, Any]]:
    """Each service with the interface a plain harvest asks (``kind``) and its URL."""
    hosts = ready["hosts"]
    out = []
    for service in ready["services"]:
        kind = next(k for k in _PREFERENCE if k in service["kinds"])
        host = hosts[service["host"]]
        url = {"obscore": host["tap_url"], "sia2": host["sia2_url"], "sia1": host["sia1_url"]}
        out.append({**service, "kind": kind, "url": url[kind], "base_url": host["base_url"]})
    return out


def expected_datasets(
    ready: dict[str, Any], positions: Sequence[tuple[float, float]], radius: float, seed: int
) -> dict[str, set[tuple[int, str]]]:
    """Per service ivoid, the (target, access URL) pairs a search of every target finds."""
    from voharvest.testing import discovery_vo

    vo = discovery_vo(seed)
    found: dict[str, set[tuple[int, str]]] = {}
    for service in _services(ready):
        footprint = vo.sites[service["host"]].footprint
        pairs = found.setdefault(service["ivoid"], set())
        for index, (ra, dec) in enumerate(positions):
            for tile in footprint.tiles(ra, dec, radius, 4):
                pairs.add((index, f"host{service['host']}/images/{tile.id}.fits"))
    return found


# --- (a) pyvo.discover, one target after another -----------------------------------------------


def _pyvo(
    ready: dict[str, Any], positions: Sequence[tuple[int, float, float]], radius: float
) -> dict[str, Any]:
    from pyvo import registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyvo.discover import images_globally

    registry.choose_RegTAP_service(ready["registry_url"])
    pairs: set[tuple[int, str]] = set()
    failures = 0
    with CpuSpan() as span, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, ra, dec in positions:
            try:
                found, log = images_globally(space=(ra, dec, radius))
            except Exception:  # pyvo says "no services to query" where none covers the target
                continue
            failures += sum(" skipped: " in line for line in log)
            pairs |= {(index, dataset_key(ready, str(image.access_url))) for image in found}
    return {"pairs": pairs, "failures": failures, "makespan_s": span.wall_s}


# --- (b) the plain harvest ---------------------------------------------------------------


async def _plain(
    ready: dict[str, Any],
    positions: Sequence[tuple[float, float]],
    radius: float,
    *,
    rate: float,
    concurrency: int,
    workers: int,
) -> dict[str, Any]:
    import voharvest
    from voharvest import ClientConfig, HostPolicy, VOClient, VOHarvestError

    services = _services(ready)
    config = ClientConfig(host=HostPolicy(rate=rate, concurrency=concurrency))
    records = 0
    errors: collections.Counter[str] = collections.Counter()
    obscore_pairs: set[tuple[int, str]] = set()
    async with VOClient(config) as client:
        sia = [
            client.sia_service(s["url"], version=2 if s["kind"] == "sia2" else 1)
            for s in services
            if s["kind"] != "obscore"
        ]
        queue = collections.deque(
            (s["url"], index, ra, dec)
            for index, ra, dec in positions
            for s in services
            if s["kind"] == "obscore"
        )

        async def obscore_worker() -> None:
            while queue:
                url, index, ra, dec = queue.popleft()
                query = (
                    "SELECT * FROM ivoa.obscore WHERE dataproduct_type='image' AND "
                    f"(1=CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {ra}, {dec}, "
                    f"{radius})) OR 1=INTERSECTS(CIRCLE('ICRS', {ra}, {dec}, {radius}), "
                    "s_region))"
                )
                try:
                    table = await client.tap_service(url).run_sync(query)
                except VOHarvestError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                urls = table.to_table()["access_url"]
                obscore_pairs.update((index, dataset_key(ready, str(u))) for u in urls)

        async def harvest() -> None:
            nonlocal records
            where = [(ra, dec) for _, ra, dec in positions]
            job = voharvest.harvest(client, sia, where, size=2 * radius, searches=workers)
            async for item in job:
                if item.ok:
                    records += item.records
                else:
                    errors[type(item.error).__name__] += 1

        with CpuSpan() as span:
            await asyncio.gather(harvest(), *(obscore_worker() for _ in range(workers)))
    return {
        "records_sia": records,
        "obscore_pairs": obscore_pairs,
        "failures": sum(errors.values()),
        "errors": dict(errors),
        "makespan_s": span.wall_s,
        "client_cpu_s": span.own_s,
    }


# --- (c) voharvest discover ---------------------------------------------------------------------


async def _discover(
    ready: dict[str, Any],
    positions: Sequence[tuple[float, float]],
    radius: float,
    *,
    rate: float,
    concurrency: int,
    intersect: str,
) -> dict[str, Any]:
    """``VOClient.discover`` over every target."""
    from voharvest import ClientConfig, HostPolicy, RegistryEndpoint, VOClient
    from voharvest._discovery import DiscoveryOptions

    config = ClientConfig(
        registries=(RegistryEndpoint(ready["registry_url"]),),
        host=HostPolicy(rate=rate, concurrency=concurrency),
    )
    options = DiscoveryOptions(intersect=intersect)
    async with VOClient(config) as client:
        with CpuSpan() as span:
            result = await client.discover(list(positions), size=radius, options=options)
    pairs = {
        (target, dataset_key(ready, str(url)))
        for dataset in result.datasets
        for url in (dataset.access_urls or [dataset.access_url])
        for target in dataset.targets
    }
    return {
        "pairs": pairs,
        "requests_reported": result.requests,
        "failures": sum(report.failed for report in result.services),
        "services": {
            f"{report.ivoid} ({report.kind})": {
                "status": report.status,
                "mode": report.mode,
                "requests": report.requests,
            }
            for report in result.services
        },
        "makespan_s": span.wall_s,
        "client_cpu_s": span.own_s,
    }


# --- the run -----------------------------------------------------------------------------------


class _Farms:
    """One farm per contender, all started at once (their start-ups overlap), each
    stopped when its contender is done: a farm waiting for its turn only ticks."""

    def __init__(self, args: Any, count: int) -> None:
        self.farms = [Farm(*_farm_options(args)) for _ in range(count)]
        self.started: list[Farm] = []

    def __enter__(self) -> _Farms:
        with ThreadPoolExecutor(len(self.farms)) as pool:
            for farm in pool.map(lambda f: f.__enter__(), self.farms):
                self.started.append(farm)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for farm in self.started:
            farm.__exit__(None, None, None)

    def run(self, index: int, contender: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """``contender(ready)`` on farm ``index``, which is then stopped: its result, the
        farm's counters and its ready line."""
        farm = self.farms[index]
        try:
            result = contender(farm.ready)
        finally:
            farm.__exit__(None, None, None)
            self.started.remove(farm)
        return result, farm.counters(), farm.ready


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _harness.arguments(__file__, __doc__, argv, OPTIONS, SMOKE)
    everyone = targets(args.targets)
    pyvo_sample = sample_of(args.targets, args.pyvo_sample)
    plain_sample = sample_of(args.targets, args.harvest_sample)
    n_pyvo, n_plain = len(pyvo_sample), len(plain_sample)
    policy = {"rate": args.rate, "concurrency": args.concurrency}

    started = time.perf_counter()
    with _Farms(args, 3) as farms:
        pyvo_run, pyvo_farm, _ = farms.run(
            0, lambda r: _pyvo(r, [(i, *everyone[i]) for i in pyvo_sample], args.radius)
        )
        plain_run, plain_farm, _ = farms.run(
            1,
            lambda r: asyncio.run(
                _plain(
                    r,
                    [(i, *everyone[i]) for i in plain_sample],
                    args.radius,
                    **policy,
                    workers=args.workers,
                )
            ),
        )
        ours_run, ours_farm, ready = farms.run(
            2,
            lambda r: asyncio.run(
                _discover(r, everyone, args.radius, **policy, intersect=args.intersect)
            ),
        )
    services = _services(ready)
    expected = expected_datasets(ready, everyone, args.radius, args.seed)
    truth = set().union(*expected.values())
    n_services = len(services)

    def sample(pairs: set[tuple[int, str]], n: list[int]) -> set[tuple[int, str]]:
        chosen = set(n)
        return {p for p in pairs if p[0] in chosen}

    # The plain harvest's sample against the computation: SIA record counts, ObsCore URLs.
    obscore_ivoids = [s["ivoid"] for s in services if s["kind"] == "obscore"]
    expected_obscore = sample(set().union(*(expected[i] for i in obscore_ivoids)), plain_sample)
    expected_sia_records = sum(
        len(sample(pairs, plain_sample))
        for ivoid, pairs in expected.items()
        if ivoid not in obscore_ivoids
    )
    plain_checked = (
        plain_run["obscore_pairs"] == expected_obscore
        and plain_run["records_sia"] == expected_sia_records
    )
    plain = {
        "requests": args.targets * n_services,
        "requests_measured": plain_farm["requests"],
        "sample_targets": n_plain,
        "makespan_s": plain_run["makespan_s"] * args.targets / n_plain,
        "makespan_measured_s": plain_run["makespan_s"],
        "datasets": len(truth),
        "distinct_urls": len({url for _, url in truth}),
        "sample_matches_computation": plain_checked,
        "failures": plain_run["failures"],
        "errors": plain_run["errors"],
        "farm": plain_farm,
    }
    pyvo_pairs = pyvo_run["pairs"]
    pyvo = {
        "sample_targets": n_pyvo,
        "requests": (pyvo_farm["requests"] or 0) * args.targets / n_pyvo,
        "requests_measured": pyvo_farm["requests"],
        "makespan_s": pyvo_run["makespan_s"] * args.targets / n_pyvo,
        "makespan_measured_s": pyvo_run["makespan_s"],
        "datasets_sample": len(pyvo_pairs),
        "datasets_sample_expected": len(sample(truth, pyvo_sample)),
        "same_datasets_on_sample": pyvo_pairs == sample(truth, pyvo_sample),
        "failures": pyvo_run["failures"],
        "farm": pyvo_farm,
    }
    missing = truth - ours_run["pairs"]
    extra = ours_run["pairs"] - truth
    ours = {
        "requests": ours_farm["requests"],
        "requests_reported": ours_run["requests_reported"],
        "makespan_s": ours_run["makespan_s"],
        "datasets": len(ours_run["pairs"]),
        "same_datasets": not missing and not extra,
        "missing": len(missing),
        "extra": len(extra),
        "failures": ours_run["failures"],
        "client_cpu_s": ours_run["client_cpu_s"],
        "services": ours_run["services"],
        "farm": ours_farm,
    }
    figures: dict[str, Any] = {
        "workload": {
            "targets": args.targets,
            "radius_deg": args.radius,
            "services": n_services,
            "service_kinds": dict(collections.Counter(s["kind"] for s in services)),
            "hosts": len(ready["hosts"]),
            "latency_s": args.latency,
            "rate_per_data_host": args.rate,
            "burst": args.burst,
            "voharvest_policy": policy,
            "intersect": args.intersect,
            "wall_s": time.perf_counter() - started,
        },
        "targets": _targets(plain, ours),
        "pyvo_discover": pyvo,
        "plain_harvest": plain,
        "voharvest_discover": ours,
    }
    _write(figures, args)
    return figures


def _targets(plain: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests_over_plain": _report.target(
            ours["requests"] / plain["requests"], REQUESTS_RATIO, at_most=True
        ),
        "makespan_over_plain": _report.target(
            ours["makespan_s"] / plain["makespan_s"], MAKESPAN_RATIO, at_most=True
        ),
        "rate_violations": _report.target(ours["farm"]["rate_violations"], 0, at_most=True),
        "same_datasets": {
            "target": True,
            "value": ours["same_datasets"],
            "met": ours["same_datasets"],
        },
    }


def _summary(figures: dict[str, Any]) -> str:
    work, plain, pyvo = figures["workload"], figures["plain_harvest"], figures["pyvo_discover"]
    ours, goals = figures["voharvest_discover"], figures["targets"]
    kinds = ", ".join(f"{v} {k}" for k, v in work["service_kinds"].items())
    checked = "matched" if plain["sample_matches_computation"] else "**did not match**"
    lines = [
        f"Workload: {work['targets']:,} targets (radius {work['radius_deg']:g} deg) over "
        f"{work['services']} services ({kinds} as a plain harvest asks them) on "
        f"{work['hosts'] - 1} sites of a VOFarm VO, each data "
        f"host enforcing {work['rate_per_data_host']:g} requests/s (bucket {work['burst']:g}), "
        f"{work['latency_s'] * 1000:g} ms latency; the registry host is not limited. The farm runs "
        "in its own process and is restarted for each contender. Datasets are (target, access "
        "URL) pairs; a plain harvest's are computed from the farm's footprints for every target "
        f"and checked on its measured sample ({checked}).",
        "",
        f"**plain harvest**: one request per (service, target), {plain['requests']:,} in all; "
        f"makespan measured on {plain['sample_targets']} targets "
        f"({plain['makespan_measured_s']:.1f} s, {plain['requests_measured']:,} requests) and "
        f"scaled. **pyvo.discover** ran on {pyvo['sample_targets']} targets "
        f"({pyvo['requests_measured']} requests, {pyvo['makespan_measured_s']:.1f} s), scaled; it "
        f"found {pyvo['datasets_sample']} of the {pyvo['datasets_sample_expected']} datasets of "
        "its sample (its coverage test asks the whole order-6 cell around a target to be covered, "
        "and its SIA 1.0 SIZE is the radius).",
    ]
    lines += [
        "",
        f"**voharvest discover**: {ours['requests']:,} requests "
        f"({goals['requests_over_plain']['value']:.4f} of the plain harvest's; goal ≤ "
        f"{REQUESTS_RATIO:g}: {_report.verdict(goals['requests_over_plain'])}), makespan "
        f"{ours['makespan_s']:.1f} s ({goals['makespan_over_plain']['value']:.4f}; goal ≤ "
        f"{MAKESPAN_RATIO:g}: {_report.verdict(goals['makespan_over_plain'])}), "
        f"{ours['farm']['rate_violations']} rate violations "
        f"({_report.verdict(goals['rate_violations'])}), same datasets: "
        f"{ours['same_datasets']} ({ours['missing']} missing, {ours['extra']} extra).",
    ]
    return "\n".join(lines)


def _write(figures: dict[str, Any], args: Any) -> None:
    figures["summary"] = _summary(figures)
    plain, pyvo, ours = (
        figures["plain_harvest"],
        figures["pyvo_discover"],
        figures["voharvest_discover"],
    )
    work = figures["workload"]
    header = ["contender", "requests", "makespan (s)", "datasets", "rate violations", "failures"]
    rows: list[list[Any]] = [
        [
            f"pyvo.discover per target ({pyvo['sample_targets']} run, scaled)",
            round(pyvo["requests"]),
            pyvo["makespan_s"],
            f"{pyvo['datasets_sample']} of {pyvo['datasets_sample_expected']} (sample)",
            pyvo["farm"]["rate_violations"],
            pyvo["failures"],
        ],
        [
            f"voharvest plain harvest (N x S; makespan from {plain['sample_targets']} targets)",
            plain["requests"],
            plain["makespan_s"],
            plain["datasets"],
            plain["farm"]["rate_violations"],
            plain["failures"],
        ],
        [
            f"voharvest discover ({work['targets']:,} targets)",
            ours["requests"],
            ours["makespan_s"],
            ours["datasets"],
            ours["farm"]["rate_violations"],
            ours["failures"],
        ],
    ]
    bars = {
        "pyvo.discover (scaled)": pyvo["makespan_s"],
        "plain harvest": plain["makespan_s"],
        "voharvest discover": ours["makespan_s"],
    }
    title = f"Discovery: {work['targets']:,} targets over {work['services']} services"
    _report.write(
        args, "discover", title, table=(header, rows), data=figures, plot=("makespan (s)", bars)
    )


if __name__ == "__main__":
    main()
