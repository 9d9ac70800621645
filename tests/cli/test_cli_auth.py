"""``--netrc``, ``--token-file``, ``--capabilities`` and the environment, as a user runs them.

The first harvest runs in a subprocess, as a user's does; the others run the
command line's ``main()`` in this process (tests/cli/inprocess.py), where
nothing about the process itself is in question.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.inprocess import voharvest_here
from voharvest.testing import FarmAuth, HostConfig, VOFarm

PASSWORD = "pw-cli-4471-secret"
TOKEN = "tok-cli-9032-secret"
FAST = ["--no-rate-limit", "--attempts", "3", "--read-timeout", "5"]


async def voharvest(*args: str | Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voharvest",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def farm_for() -> AsyncIterator:
    farms: list[VOFarm] = []

    async def start(auth: FarmAuth) -> VOFarm:
        config = HostConfig(auth=auth, images_per_search=2)
        farm = await VOFarm(hosts=1, config=config, addresses=["127.0.0.1"]).start()
        farms.append(farm)
        return farm

    yield start
    for farm in farms:
        await farm.stop()


def _harvest_args(farm: VOFarm, out: Path) -> list[str | Path]:
    return [
        "harvest",
        "--sia2",
        farm.hosts[0].sia2_url,
        "--target",
        "10 20",
        "--size",
        "0.2",
        "--format",
        "image/fits",
        "--out",
        out,
        "--no-progress",
        *FAST,
    ]


def _no_secret_under(folder: Path, *texts: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
            assert TOKEN.encode() not in path.read_bytes(), path
    for text in texts:
        assert PASSWORD not in text and TOKEN not in text


async def test_netrc_with_capabilities_harvests_and_without_exits_1(
    farm_for, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    farm = await farm_for(FarmAuth(method="basic", username="alice", password=PASSWORD))
    host = farm.hosts[0]
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {host.base_url}/ login alice password {PASSWORD}\n")
    netrc.chmod(0o600)

    out = tmp_path / "with"
    code, stdout, err = await voharvest(
        *_harvest_args(farm, out),
        "--netrc",
        netrc,
        "--capabilities",
        host.base_url + "/capabilities",
    )
    assert code == 0, err
    assert list(out.rglob("*.fits"))
    _no_secret_under(out, stdout, err)

    bare = tmp_path / "without"
    requests = host.counters.requests
    code, stdout, err = await voharvest_here(capsys, *_harvest_args(farm, bare))
    assert code == 1
    assert "401" in err and "Basic" in err and host.base_url in err
    assert host.counters.requests - requests == 1  # one search, one refusal, no retry
    _no_secret_under(bare, stdout, err)


async def test_a_token_file_from_the_option_or_the_environment(
    farm_for, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    farm = await farm_for(FarmAuth(method="token", secret=TOKEN))
    host = farm.hosts[0]
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")

    code, _, err = await voharvest_here(
        capsys, *_harvest_args(farm, tmp_path / "a"), "--token-file", f"{host.base_url}={token}"
    )
    assert code == 0, err
    with monkeypatch.context() as environment:
        environment.setenv("VOHARVEST_TOKEN_FILE", f"{host.base_url}={token}")
        code, _, err = await voharvest_here(capsys, *_harvest_args(farm, tmp_path / "b"))
    assert code == 0, err
    # A token bound to another origin is not sent here.
    code, _, err = await voharvest_here(
        capsys,
        *_harvest_args(farm, tmp_path / "c"),
        "--token-file",
        f"http://127.0.0.9:1={token}",
    )
    assert code == 1 and "401" in err and "Bearer" in err
    _no_secret_under(tmp_path / "a", err)
    _no_secret_under(tmp_path / "b")


async def test_bad_credential_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, _, err = await voharvest_here(
        capsys, "search", "http://127.0.0.1:1/sia", "--pos", "1 2", "--size", "0.1",
        "--cert", str(tmp_path / "cert.pem"),
    )  # fmt: skip
    assert code == 2 and "SCOPE=CERT" in err
    code, _, err = await voharvest_here(
        capsys, "search", "http://127.0.0.1:1/sia", "--pos", "1 2", "--size", "0.1",
        "--netrc", str(tmp_path / "missing"),
    )  # fmt: skip
    assert code == 2 and "netrc" in err
