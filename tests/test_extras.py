"""Every module imports only what the install it runs on brings, read statically.

The suite runs with the dev extra, which once hid a README command that needed a dev-only
package at run time (`storelens bench api` and httpx). tests/test_demo_fresh_install.py runs
a few commands on a fresh `.[edge,cloud]` install (slowly); this test reads every module of
the tree instead (imports inside functions too, so a lazy import is no escape) and checks each
third-party import against the requirements of the install that module belongs to, as the
README names them:

- the bottom layer and the CLI root: the core install (`pip install storelens`);
- `edge/`: `storelens[edge]`; `cloud/`: `storelens[cloud]`; `models/`: the core, export in
  `models/export.py` (`storelens[export]`);
- `tools/`: what `make demo` installs, `.[edge,cloud]` ("every other command here needs no
  Python package beyond what `make demo` installs"), `bench export` the export extra too.

A requirement brings its own dependencies (read from the installed packages' metadata), so
importing starlette under fastapi counts as provided.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from conftest import REPO

FOLDERS = {"storelens": "storelens", "edge": "storelens.edge", "cloud": "storelens.cloud",
           "models": "storelens.models", "tools": "storelens.tools"}  # fmt: skip
DEMO = ("edge", "cloud")
# package -> the extras its modules may use; a longer prefix wins.
INSTALLS: dict[str, tuple[str, ...]] = {
    "storelens": (),
    # Loaded on first use by ingest only (storelens/contract/__init__.py says so).
    "storelens.contract.decoder": ("cloud",),
    "storelens.edge": ("edge",),
    # PC/SC readers: the pcsc extra, and a clear error without it (the import is guarded).
    "storelens.edge.cards.pcsc": ("edge", "pcsc"),
    "storelens.cloud": ("cloud",),
    "storelens.models": (),
    "storelens.models.export": ("export",),
    "storelens.tools": DEMO,
    "storelens.tools.bench.export": (*DEMO, "export"),
}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@cache
def provided(extras: tuple[str, ...]) -> frozenset[str]:
    """The distributions an install with ``extras`` has: its requirements and theirs."""
    project = _project()
    wanted = [*project["dependencies"]]
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    seen: set[str] = set()
    todo = [_name(r) for r in wanted if "sys_platform" not in r or sys.platform in r]
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue  # not installed here: it brings nothing we could check
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return frozenset(seen)


@cache
def _distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top != "storelens" and top not in sys.stdlib_module_names:
                found.add(top)
    return found


def install_of(module: str) -> tuple[str, ...]:
    best = max((p for p in INSTALLS if module == p or module.startswith(p + ".")), key=len)
    return INSTALLS[best]


def missing(path: Path, module: str) -> list[str]:
    """Third-party imports of ``path`` that its install does not provide."""
    extras = install_of(module)
    have = provided(extras)
    bad = []
    for top in sorted(third_party_imports(path)):
        dists = {_canonical(d) for d in _distributions().get(top, [top])}
        if not dists & have:
            where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            bad.append(f"{where} imports {top} ({', '.join(sorted(dists))}),"
                       f" not in storelens[{','.join(extras)}]")  # fmt: skip
    return bad


def modules() -> list[tuple[Path, str]]:
    found = []
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append((path, ".".join([package, *parts])))
    return found


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_every_import_is_brought_by_the_modules_install(folder: str) -> None:
    files = [(p, m) for p, m in modules() if p.is_relative_to(REPO / folder)]
    assert len(files) >= 5
    assert [line for p, m in files for line in missing(p, m)] == []


def test_the_cli_root_loads_only_the_core() -> None:
    # `storelens ...` imports every side's command module to mount it, so a device install
    # (edge), a service install (cloud) and a bare one must all be able to import the root.
    code = (
        "import json, sys; before = set(sys.modules); import storelens.cli; "
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout  # fmt: skip
    )
    core = provided(())
    heavy = []
    for top in loaded:
        dists = {_canonical(d) for d in _distributions().get(top, [])}
        if dists and top != "storelens" and not dists & core:
            heavy.append(f"{top} ({', '.join(sorted(dists))})")
    assert heavy == []


@pytest.mark.parametrize(
    ("source", "module", "flagged"),
    [
        ("import httpx\n", "storelens.tools.bench.api", False),  # cloud, in the demo install
        ("def f():\n    import httpx\n", "storelens.edge.agent", True),  # cloud only
        ("from fastapi import FastAPI\n", "storelens.contract.events", True),
        ("import pytest\n", "storelens.tools.demo", True),  # dev extra only
        ("import cv2\n", "storelens.cloud.analytics.floor", True),
        ("import ultralytics\n", "storelens.models.export", False),
        ("import ultralytics\n", "storelens.models.manifest", True),
        ("import starlette\n", "storelens.cloud.api.app", False),  # brought by fastapi
        ("import os, json\n", "storelens.assets", False),
    ],
)  # fmt: skip
def test_the_check_flags_an_import_outside_the_install(
    tmp_path: Path, source: str, module: str, flagged: bool
) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert bool(missing(path, module)) is flagged
