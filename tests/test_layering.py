"""The layering, enforced: tooling sits above the product, vision stays on the edge.

Every module of each product package is parsed (not imported, so nothing is hidden behind a
lazy import inside a function) and each `import` / `from ... import` anywhere in it is checked:

- the product (`storelens.edge`, `storelens.cloud`, `storelens.models`, the contract and the
  bottom-layer modules) never imports `storelens.tools` (benches, seeds, scenarios, demo,
  development brokers);
- the cloud never imports vision code (`cv2`, `onnxruntime`, `storelens.edge`): a cloud-only
  install has neither OpenCV nor ONNX Runtime;
- the bottom layer (contract, pseudonyms, assets) imports no side of the system at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import storelens
import storelens.cloud
import storelens.contract
import storelens.edge
import storelens.models

TOOLS = ("storelens.tools",)
VISION = ("cv2", "onnxruntime", "storelens.edge")
SIDES = ("storelens.edge", "storelens.cloud", "storelens.models", "storelens.tools")
BOTTOM_MODULES = ("assets.py", "pseudonym.py", "__init__.py")


def _package_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module `path` imports, anywhere in it, as absolute dotted names with line numbers.

    For `from a import b` both `a` and `a.b` are listed (b may be a sub-module).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(files: list[tuple[Path, str]], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path, module in files:
        for line, name in imported_modules(path, module):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path}:{line} imports {name}")
    return sorted(set(bad))


def package_files(package) -> list[tuple[Path, str]]:  # noqa: ANN001 - a module object
    root = Path(package.__file__).parent
    return [(p, _package_name(p, root, package.__name__)) for p in sorted(root.rglob("*.py"))]


def bottom_files() -> list[tuple[Path, str]]:
    root = Path(storelens.__file__).parent
    files = [(root / name, f"storelens.{name[:-3]}") for name in BOTTOM_MODULES]
    files[-1] = (root / "__init__.py", "storelens")
    return files + package_files(storelens.contract)


PRODUCT = {
    "edge": lambda: package_files(storelens.edge),
    "cloud": lambda: package_files(storelens.cloud),
    "models": lambda: package_files(storelens.models),
    "bottom": bottom_files,
}


@pytest.mark.parametrize("side", sorted(PRODUCT))
def test_product_never_imports_tooling(side: str) -> None:
    files = PRODUCT[side]()
    assert len(files) >= 3
    assert violations(files, TOOLS) == []


def test_cloud_never_imports_vision() -> None:
    assert violations(package_files(storelens.cloud), VISION) == []


def test_bottom_layer_imports_no_side() -> None:
    assert violations(bottom_files(), SIDES) == []


OFFLINE = ("storelens.edge.offline",)


def test_live_edge_never_imports_offline_tools() -> None:
    # Analysis, annotation and MOT output are for recorded video; the agent's pipeline runs
    # without them. Only the command line (`storelens analyze`, `split-cameras`) reaches them.
    live = [
        (path, module)
        for path, module in package_files(storelens.edge)
        if not module.startswith(OFFLINE) and module != "storelens.edge.cli"
    ]
    assert "storelens.edge.agent" in {module for _, module in live}
    assert violations(live, OFFLINE) == []


def test_product_cli_modules_are_scanned() -> None:
    # The product CLIs are where tooling crept in before; make sure the walk reaches them.
    scanned = {m for side in PRODUCT.values() for _, m in side()}
    assert {"storelens.cloud.cli", "storelens.edge.cli", "storelens.models.cli"} <= scanned
    assert "storelens.contract.decoder" in scanned


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import storelens.tools.demo\n", "storelens.cloud.x", "storelens.tools.demo"),
        ("def f():\n    from storelens.tools import seed\n", "storelens.cloud.x",
         "storelens.tools.seed"),
        ("from storelens import tools\n", "storelens.edge.x", "storelens.tools"),
        ("from ..tools.bench import report\n", "storelens.cloud.x", "storelens.tools.bench"),
        ("from .. import tools\n", "storelens.models.x", "storelens.tools"),
    ],
)  # fmt: skip
def test_the_scan_catches_every_import_form(
    tmp_path: Path, source: str, module: str, expected: str
) -> None:
    path = tmp_path / "x.py"
    path.write_text(source)
    assert any(expected in v for v in violations([(path, module)], TOOLS))


def test_the_scan_resolves_relative_imports_in_packages(tmp_path: Path) -> None:
    path = tmp_path / "__init__.py"
    path.write_text("from .tools import demo\n")
    expected = [f"{path}:1 imports storelens.tools", f"{path}:1 imports storelens.tools.demo"]
    assert violations([(path, "storelens")], TOOLS) == expected
    assert violations([(path, "storelens.cloud")], TOOLS) == []
