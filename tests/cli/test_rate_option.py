"""``--no-rate-limit`` says what ``--rate 0`` meant; ``--rate 0`` still works, and says so."""

from __future__ import annotations

import math

import pytest

from voharvest.cli import _client_config, _parser

BASE = ["search", "http://h/sia", "--pos", "10 20", "--size", "0.1"]


def rate_of(*options: str) -> float:
    return _client_config(_parser().parse_args([*BASE, *options])).host.rate


def test_no_rate_limit(capsys: pytest.CaptureFixture[str]):
    assert rate_of("--no-rate-limit") == math.inf
    assert rate_of("--rate", "4") == 4.0
    assert rate_of() == 10.0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("rate", ["0", "-1"])
def test_rate_0_is_the_deprecated_spelling(capsys: pytest.CaptureFixture[str], rate: str):
    assert rate_of("--rate", rate) == math.inf
    assert capsys.readouterr().err == (
        "voharvest: --rate 0 (or less) for no limit is deprecated; use --no-rate-limit\n"
    )
