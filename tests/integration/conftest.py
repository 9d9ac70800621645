"""The voharvest integration tests run against a real GAVO DaCHS on 127.0.0.1.

``bash tests/integration/setup_dachs.sh`` brings it up (see
docs/integration.md). Whether the tests run is decided once per session:

- DaCHS answers with the test resources loaded: they run;
- it doesn't, and ``VOHARVEST_DACHS=required``: every test fails, saying why
  (CI sets this, so a broken setup can never pass as a skip);
- it doesn't, otherwise: every test is skipped, saying why.

``VOHARVEST_DACHS_URL`` is where to look (default ``http://127.0.0.1:8080``).
Every test here gets the ``dachs`` marker, so ``pytest -m "not dachs"`` leaves
them out and ``pytest -m dachs`` runs only them.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.dachs.make_fits import image_name
from voharvest import ClientConfig, RegistryEndpoint, RegistryFeatures, RetryPolicy, Timeouts
from voharvest.client import VOClient

HERE = Path(__file__).parent

#: What DaCHS 2.7 runs (from its TAPRegExt capabilities; test_registry checks
#: this against the server): ADQL 2.1 UNION and ILIKE, the MOC function, and
#: (with our rr RD) the RegTAP 1.2 coverage tables.
DACHS_FEATURES = RegistryFeatures(union=True, ilike=True, moc=True, stc=True)

#: Where nothing listens: a name resolution or a decoy service fails fast.
NOWHERE = "http://127.0.0.1:9"

#: DaCHS's standard dataset identifiers (pubDIDs) are ivo://<authority>/~?<accref>;
#: the authority is DaCHS's default, which setup_dachs.sh leaves alone.
PUBDID_PREFIX = "ivo://x-unregistred/~?"
#: The DataLink/SODA collection (tests/integration/dachs/dlimg/q.rd).
DLIMG = "/voharvest/dlimg/q"


@dataclass(frozen=True)
class Dachs:
    """The running DaCHS: where it listens and how it names itself."""

    base: str  # where we connect, e.g. http://127.0.0.1:8080
    server_url: str  # DaCHS's serverURL, in the URLs it writes (http://localhost:8080)

    @property
    def tap(self) -> str:
        return f"{self.base}/tap"

    @property
    def sia2(self) -> str:
        return f"{self.server_url}/__system__/siap2/sitewide/siap2.xml"

    def sia1(self, collection: str) -> str:
        return f"{self.server_url}/voharvest/{collection}/q/i/siap.xml?"

    # The DataLink/SODA collection: in ivoa.obscore (so ``sia2`` finds it too,
    # with the DataLink documents as access_url), not in the registry.

    @property
    def dlimg_sia1(self) -> str:
        """SIA v1; access references are the FITS files (getproduct URLs)."""
        return self.sia1("dlimg")

    @property
    def dlimg_sia2(self) -> str:
        """SIA v2 over this collection alone; access_url is the DataLink document."""
        return f"{self.server_url}{DLIMG}/sia2/siap2.xml"

    @property
    def dlimg_dlget(self) -> str:
        """The SODA sync endpoint (ID=<pubDID>&CIRCLE=ra dec r, ...)."""
        return f"{self.server_url}{DLIMG}/dl/dlget"

    @staticmethod
    def dlimg_pubdid(target: str, band: str) -> str:
        """The pubDID of one image, e.g. ``dlimg_pubdid("M51", "J")``."""
        return f"{PUBDID_PREFIX}voharvest/dlimg/data/{image_name('dlimg', target, band)}"

    def dlmeta(self, pubdid: str) -> str:
        """The DataLink document's URL, quoted as DaCHS writes it in access_url."""
        return f"{self.server_url}{DLIMG}/dl/dlmeta?ID={urllib.parse.quote(pubdid)}"

    def config(
        self, features: RegistryFeatures = DACHS_FEATURES, **changes: object
    ) -> ClientConfig:
        """A client configuration whose only registry is this DaCHS."""
        values: dict[str, object] = {
            "registries": (RegistryEndpoint(self.tap, features),),
            "sesame": (f"{NOWHERE}/sesame",),
            "retry": RetryPolicy(attempts=2, initial=0.1, maximum=0.5, jitter=0.0),
            "timeouts": Timeouts(connect=5.0, read=30.0, total=60.0),
        }
        values.update(changes)
        return ClientConfig(**values)  # type: ignore[arg-type]


def _fetch(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read().decode("utf-8", errors="replace")


def _probe(base: str) -> tuple[Dachs | None, str]:
    """(Dachs, "") if the server answers with our resources, else (None, why not)."""
    try:
        if "available>true" not in _fetch(f"{base}/tap/availability"):
            return None, f"DaCHS at {base} says it is not available"
    except (OSError, urllib.error.URLError) as exc:
        return None, f"no DaCHS answers at {base} ({exc})"
    query = urllib.parse.urlencode(
        {
            "REQUEST": "doQuery",
            "LANG": "ADQL",
            "RESPONSEFORMAT": "votabletd",
            "QUERY": "SELECT access_url FROM rr.interface"
            " WHERE ivoid = 'ivo://voharvest.test/sdss/q/i' AND intf_role = 'std'",
        }
    )
    try:
        answer = _fetch(f"{base}/tap/sync?{query}", timeout=15.0)
    except (OSError, urllib.error.URLError) as exc:
        return None, f"DaCHS at {base} answers, but its TAP service fails ({exc})"
    marker = "/voharvest/sdss/q/i/siap.xml"
    if marker not in answer:
        return None, (
            f"DaCHS at {base} answers, but without the voharvest test resources "
            "(rr tables, image collections)"
        )
    start = answer.index("<TD>") + len("<TD>")
    server_url = answer[start : answer.index(marker, start)]
    dachs = Dachs(base=base, server_url=server_url)
    # The DataLink collection: its SIA v2 service leads to DataLink documents.
    search = urllib.parse.urlencode(
        {"POS": "CIRCLE 202.47 47.2 0.05", "RESPONSEFORMAT": "votabletd", "MAXREC": "10"}
    )
    expected = f"<TD>{dachs.dlmeta(dachs.dlimg_pubdid('M51', 'J'))}</TD>"
    try:
        answer = _fetch(f"{base}{DLIMG}/sia2/siap2.xml?{search}", timeout=15.0)
    except (OSError, urllib.error.URLError) as exc:
        answer = str(exc)
    if expected not in answer:
        return None, (
            f"DaCHS at {base} answers, but without the DataLink image collection"
            f" voharvest/dlimg ({DLIMG}/sia2/siap2.xml does not lead to {expected[4:-5]})"
        )
    # ... and it is in ivoa.obscore: the site-wide SIA v2 service finds it.
    try:
        answer = _fetch(f"{base}/__system__/siap2/sitewide/siap2.xml?{search}", timeout=15.0)
    except (OSError, urllib.error.URLError) as exc:
        answer = str(exc)
    if expected not in answer:
        return None, (
            f"DaCHS at {base} answers, but the DataLink image collection voharvest/dlimg"
            " is not in ivoa.obscore (the site-wide SIA v2 service does not lead to"
            f" {expected[4:-5]})"
        )
    return dachs, ""


_SESSION_PROBE: dict[str, tuple[Dachs | None, str]] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.dachs)


@pytest.fixture(scope="session")
def dachs_server() -> Dachs:
    """The running DaCHS; skip, or fail with VOHARVEST_DACHS=required, if there is none."""
    base = os.environ.get("VOHARVEST_DACHS_URL", "http://127.0.0.1:8080").rstrip("/")
    if base not in _SESSION_PROBE:
        _SESSION_PROBE[base] = _probe(base)
    found, why = _SESSION_PROBE[base]
    if found is not None:
        return found
    hint = "bring it up with: bash tests/integration/setup_dachs.sh (docs/integration.md)"
    if os.environ.get("VOHARVEST_DACHS", "").strip().lower() == "required":
        pytest.fail(f"VOHARVEST_DACHS=required, but {why}; {hint}", pytrace=False)
    pytest.skip(f"{why}; {hint}; set VOHARVEST_DACHS=required to fail instead")


@pytest.fixture(autouse=True)
def _needs_dachs(dachs_server: Dachs) -> Iterator[None]:
    yield


@pytest.fixture
def dachs(dachs_server: Dachs) -> Dachs:
    return dachs_server


@pytest.fixture
async def client(dachs: Dachs) -> AsyncIterator[VOClient]:
    async with VOClient(dachs.config()) as opened:
        yield opened
