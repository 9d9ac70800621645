"""The layering rules of docs/architecture: checked, not just written down."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import voharvest

PACKAGE = Path(voharvest.__file__).parent
PROTOCOL_MODULES = sorted((PACKAGE / "protocol").glob("*.py"))
FORBIDDEN_IN_PROTOCOL = {"aiohttp", "asyncio", "aiofiles", "tenacity"}
# Our own layers that sit above the protocol core.
UPPER_LAYERS = {"transport", "client", "services", "harvesting", "testing", "cli", "_limiter"}


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
    return names


def test_protocol_modules_exist():
    assert {p.stem for p in PROTOCOL_MODULES} >= {"regtap", "sia1", "sia2", "votable", "tap"}


@pytest.mark.parametrize("path", PROTOCOL_MODULES, ids=lambda p: p.stem)
def test_protocol_never_imports_io_libraries_or_upper_layers(path):
    for name in imported_names(path):
        top = name.lstrip(".").split(".")[0]
        assert top not in FORBIDDEN_IN_PROTOCOL, f"{path.name} imports {name}"
        if name.startswith(".."):
            assert top not in UPPER_LAYERS, f"{path.name} imports {name}"
        if name.startswith("voharvest."):
            assert name.split(".")[1] not in UPPER_LAYERS, f"{path.name} imports {name}"


def test_importing_the_protocol_core_loads_no_io_library():
    code = (
        "import sys\n"
        "import voharvest.protocol.regtap, voharvest.protocol.sia1, voharvest.protocol.sia2\n"
        "import voharvest.protocol.votable, voharvest.protocol.tap\n"
        f"print(sorted(m for m in {sorted(FORBIDDEN_IN_PROTOCOL)!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_every_error_derives_from_the_one_base():
    from voharvest import _exceptions

    errors = [
        obj
        for name in _exceptions.__all__
        if isinstance(obj := getattr(_exceptions, name), type)
        and issubclass(obj, Exception)
        and not issubclass(obj, Warning)
    ]
    assert len(errors) >= 8
    assert all(issubclass(error, voharvest.VOHarvestError) for error in errors)


@pytest.mark.parametrize(
    "statement",
    [
        "import voharvest",
        # The download path: a client, its downloads and the harvest engine.
        "from voharvest import VOClient, harvest, ClientConfig, Cutout, RegistryFeatures",
        "import voharvest.cli",
        # A size given as a bare number (the CLI's --size 0.01) is read without a unit parser.
        "from voharvest._checks import angle; assert angle(' 0.01 ', 'size') == 0.01",
        # A manifest's VOTable frame is written by voharvest, not by astropy's table writer.
        "import io; from voharvest.harvesting.manifest import VOTableRows as R;"
        " R(io.StringIO()).__enter__().write(['x'] * 5 + [1.0, 2.0, 3] + ['x'] * 8)",
    ],
)
def test_importing_voharvest_loads_no_astropy(statement):
    """astropy (~45 MB, ~0.4 s) loads only where VOTables are parsed or positions built."""
    code = f"import sys\n{statement}\nprint(sorted(m for m in sys.modules if m == 'astropy'))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "statement", ["import voharvest.testing", "from voharvest.testing import VOFarm, HostConfig"]
)
def test_importing_the_farm_loads_no_fits_or_wcs(statement):
    """The farm builds FITS headers (astropy.io.fits) and draws the embedded sky
    (astropy.wcs) only when asked to: ``python -m voharvest.testing serve`` starts without."""
    heavy = "('astropy.io.fits', 'astropy.wcs')"
    code = f"import sys\n{statement}\nprint(sorted(m for m in {heavy} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
