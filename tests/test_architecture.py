"""Import boundaries from STYLE.md, checked on the source (no imports executed)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lms_domain", "server", "ussd", "sync", "edge_node", "migrations")
OURS = set(PACKAGES)
# The domain may use these small pure helpers besides the standard library. aiosqlite is
# there for one module only: lms_domain.db makes the engines (server and edge alike), and
# lms_domain.sqlite_driver gives its SQLite connections one thread hop per statement.
DOMAIN_THIRD_PARTY = {"sqlalchemy", "pydantic", "phonenumbers", "argon2", "uuid_utils", "aiosqlite"}
# Other packages of ours each channel may import.
ALLOWED_OURS = {
    "lms_domain": {"lms_domain"},
    "ussd": {"lms_domain", "ussd"},
    "sync": {"lms_domain", "sync"},
    "server": {"lms_domain", "server", "ussd", "sync", "migrations"},
    "edge_node": {"lms_domain", "edge_node", "ussd", "sync", "server"},
    "migrations": {"lms_domain", "migrations", "server"},
}
# Only composition roots read configuration. migrations/env.py may fall back to the
# settings when alembic is run by hand without a URL.
SETTINGS_READERS = {"server", "edge_node"}
SETTINGS_EXCEPTIONS = {"migrations/env.py"}


def imports_of(source: str) -> set[str]:
    """Absolute module names imported anywhere in ``source`` (function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(package: str, relpath: str, modules: set[str]) -> list[str]:
    problems = []
    for module in sorted(modules):
        top = module.split(".")[0]
        if top in OURS and top not in ALLOWED_OURS[package]:
            problems.append(f"{relpath}: {package} must not import {module}")
        third_party = top not in OURS and top not in sys.stdlib_module_names
        if package == "lms_domain" and third_party and top not in DOMAIN_THIRD_PARTY:
            problems.append(f"{relpath}: lms_domain must not import {module} (put it behind a port)")
        reads_settings = module in {"server.settings", "pydantic_settings"} or module.startswith("pydantic_settings.")
        if reads_settings and package not in SETTINGS_READERS and relpath not in SETTINGS_EXCEPTIONS:
            problems.append(f"{relpath}: only composition roots read settings ({module})")
    return problems


def source_files() -> list[tuple[str, Path]]:
    return [(pkg, path) for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))]


def test_every_package_exists() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file(), package


def test_import_boundaries() -> None:
    problems: list[str] = []
    for package, path in source_files():
        rel = str(path.relative_to(ROOT))
        problems += violations(package, rel, imports_of(path.read_text()))
    assert problems == []


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("lms_domain", "import aiohttp", "lms_domain must not import aiohttp"),
        ("lms_domain", "def f():\n    from redis.asyncio import Redis", "lms_domain must not import redis.asyncio"),
        ("lms_domain", "from fpdf import FPDF", "lms_domain must not import fpdf"),
        ("lms_domain", "from server.app import create_app", "lms_domain must not import server.app"),
        ("ussd", "from server.keys import kv_key", "ussd must not import server.keys"),
        ("sync", "import edge_node.app", "sync must not import edge_node.app"),
        ("ussd", "from pydantic_settings import BaseSettings", "only composition roots read settings"),
    ],
)
def test_checker_catches_violations(package: str, source: str, expected: str) -> None:
    found = violations(package, f"{package}/x.py", imports_of(source))
    assert any(expected in problem for problem in found), found


def test_domain_may_use_its_allowed_helpers() -> None:
    source = "import sqlalchemy as sa\nimport phonenumbers\nfrom argon2 import PasswordHasher\nimport uuid, json"
    assert violations("lms_domain", "lms_domain/x.py", imports_of(source)) == []


_IMPORT_EACH_FIRST = """
import importlib, multiprocessing, pkgutil, sys
ours = ("lms_domain", "server", "ussd", "sync", "edge_node")
# The modules a process or a test may import first: each top-level module of the channels.
names = []
for package in ("server", "ussd", "sync", "edge_node"):
    root = importlib.import_module(package)
    names += [m.name for m in pkgutil.walk_packages(root.__path__, package + ".") if m.name.count(".") == 1]
for loaded in [m for m in sys.modules if m.split(".")[0] in ours]:
    del sys.modules[loaded]


def first(name):
    try:
        importlib.import_module(name)
    except ImportError as exc:
        return f"{name}: {exc}"
    return ""


if __name__ == "__main__":
    # One forked child per module: libraries stay loaded, none of our modules are.
    with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
        print("\\n".join(f for f in pool.map(first, names, chunksize=1) if f))
"""


def test_every_channel_module_imports_on_its_own(tmp_path: Path) -> None:
    """A module imported first (a CLI entry point, a test collected alone) must not fall
    into an import cycle that a different import order happens to hide."""
    import subprocess

    script = tmp_path / "import_each_first.py"
    script.write_text(_IMPORT_EACH_FIRST)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.strip() == "", result.stdout
