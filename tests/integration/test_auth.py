"""A protected DaCHS service (``limitTo``: HTTP basic auth) harvested with and without credentials.

``tests/integration/dachs/secure/svc.rd`` serves the SDSS-like images to the
DaCHS user ``voharvest`` only; setup_dachs.sh installs it and creates the user.
DaCHS 2.7 protects the service's VOSI capabilities too and names no
``securityMethod`` in them, so the credential is chosen by its scope alone.
pyvo's AuthSession, given the same password, must find the same files.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pyvo.auth import AuthSession, securitymethods
from pyvo.dal import SIAService as PyvoSIA

from tests.integration.conftest import Dachs
from tests.integration.dachs.make_fits import TARGETS
from voharvest import AuthenticationError, BasicAuth, Credentials
from voharvest.client import VOClient
from voharvest.harvesting import harvest

#: The DaCHS user setup_dachs.sh creates (a test account of a local server).
USER, PASSWORD = "voharvest", "voharvest-dachs-pw"
SECURE = "/voharvest/secure/svc/i/siap.xml?"
M51 = TARGETS["M51"]


@pytest.fixture
def secure(dachs: Dachs) -> str:
    """The protected SIA v1 URL (on the address we connect to); it must refuse us."""
    url = f"{dachs.base}{SECURE}"
    try:
        urllib.request.urlopen(f"{url}POS=202.47,47.2&SIZE=0.1", timeout=10)
        why = f"{url} answers without credentials"
    except urllib.error.HTTPError as exc:
        if exc.code == 401 and "Basic" in exc.headers.get("WWW-Authenticate", ""):
            return url
        why = f"{url} answers HTTP {exc.code}, not 401 with a Basic challenge"
    except OSError as exc:
        why = f"{url} fails: {exc}"
    hint = "re-run bash tests/integration/setup_dachs.sh (it installs secure/svc.rd and the user)"
    if os.environ.get("VOHARVEST_DACHS", "").strip().lower() == "required":
        pytest.fail(f"VOHARVEST_DACHS=required, but {why}; {hint}", pytrace=False)
    pytest.skip(f"{why}; {hint}")


async def _harvest(dachs: Dachs, url: str, credentials: Credentials, out: Path) -> list:
    async with VOClient(dachs.config(credentials=credentials)) as client:
        return [
            item
            async for item in harvest(
                client, [url], [M51], size=0.1, search_format="image/fits", download_to=out
            )
        ]


async def test_the_protected_service_harvests_with_basic_auth(
    dachs: Dachs, secure: str, tmp_path: Path
):
    credentials = Credentials(entries=(BasicAuth(dachs.base, USER, PASSWORD),))
    items = await _harvest(dachs, secure, credentials, tmp_path / "out")
    searches = [i for i in items if i.kind == "search"]
    downloads = [i for i in items if i.kind == "download"]
    assert len(searches) == 1 and searches[0].ok, searches[0].error
    assert downloads and all(i.ok for i in downloads), [i.error for i in downloads]
    names = {i.url.rsplit("/", 1)[-1] for i in downloads}
    assert names == {"sdss_m51_g.fits", "sdss_m51_r.fits"}

    # pyvo, with the same password for the same URL, finds the same files.
    session = AuthSession()
    session.credentials.set_password(USER, PASSWORD)
    session.add_security_method_for_url(dachs.base, securitymethods.BASIC)
    found = PyvoSIA(secure, session=session).search(pos=M51, size=0.1, format="image/fits")
    assert {record.getdataurl().rsplit("/", 1)[-1] for record in found} == names

    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


async def test_without_credentials_or_with_a_wrong_password_it_is_refused_at_once(
    dachs: Dachs, secure: str, tmp_path: Path
):
    for credentials, method in (
        (Credentials(), "anonymous"),
        (
            Credentials(entries=(BasicAuth(dachs.base, USER, "not-" + PASSWORD),)),
            "ivo://ivoa.net/sso#BasicAA",
        ),
        # A password bound to another origin (DaCHS's serverURL name) is not sent here.
        (Credentials(entries=(BasicAuth(dachs.server_url, USER, PASSWORD),)), "anonymous"),
    ):
        items = await _harvest(dachs, secure, credentials, tmp_path / method[-5:])
        assert len(items) == 1 and items[0].kind == "search"
        error = items[0].error
        assert isinstance(error, AuthenticationError), repr(error)
        assert error.status == 401 and error.attempts == 1
        assert error.method == method and error.challenge == ("Basic",)
        assert error.origin == dachs.base.replace("localhost", "127.0.0.1")
        assert PASSWORD not in str(error)
