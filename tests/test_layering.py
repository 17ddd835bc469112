"""The layering, enforced: tooling sits above the product, vision stays on the edge.

Every module of each product package is parsed (not imported, so nothing is hidden behind a
lazy import inside a function) and each `import` / `from ... import` anywhere in it is checked:

- the product (`storelens.edge`, `storelens.cloud`, `storelens.models`, the contract and the
  bottom-layer modules) never imports `storelens.tools` (benches, seeds, scenarios, demo,
  development brokers);
- the cloud never imports vision code (`cv2`, `onnxruntime`, `storelens.edge`): a cloud-only
  install has neither OpenCV nor ONNX Runtime;
- the bottom layer (contract, pseudonyms, assets) imports no side of the system at all.
- inside the edge, a stage imports only its own or an earlier stage (`EDGE_STAGES`).
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
# The CLI root composes the sides (and provisioning, which spans them); everything else under
# `storelens/` is the bottom layer.
CLI_ROOT = "storelens.cli"


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
    # Every module under storelens/ but the CLI root, so a new one is checked without a list
    # to keep up to date (a provisioning module that imported both sides once hid here).
    return [
        (path, module)
        for path, module in package_files(storelens)
        if module != CLI_ROOT and not module.startswith(CLI_ROOT + ".")
    ]


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
    modules = {module for _, module in bottom_files()}
    assert {"storelens", "storelens.assets", "storelens.pseudonym"} <= modules
    assert "storelens.contract.decoder" in modules
    assert not any(m.startswith(CLI_ROOT) for m in modules)
    assert violations(bottom_files(), SIDES) == []


@pytest.mark.parametrize("side", ["edge", "cloud", "models"])
def test_product_sides_do_not_import_each_other(side: str) -> None:
    # The edge, the cloud and model export install apart (`storelens[edge]`, `[cloud]`,
    # `[export]`); only the CLI root and the tooling above them join them.
    others = tuple(f"storelens.{s}" for s in ("edge", "cloud", "models") if s != side)
    assert violations(PRODUCT[side](), others) == []


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


# The edge's stages in the order data flows through them, bottom first. A module may import
# its own stage and any earlier one, never a later one: a type a stage produces lives in that
# stage (a `Sighting` is made by a camera's pipeline and fused later, so it lives in `camera/`).
# Stages on one line are parallel and may not import each other.
EDGE_STAGES: tuple[tuple[str, ...], ...] = (
    # The device config schema (and its file checks): every stage is built from a part of it,
    # so it sits below them all and imports none of them.
    ("config",),
    # The two inputs: frames from cameras, swipes from card readers. Cards are the source of
    # the swipe branch (reader -> pseudonym -> fusion), not a step after the camera chain, so
    # a card reader can know nothing of vision and vision nothing of cards.
    ("sources", "cards"),
    ("detect",),
    ("track",),
    ("scene",),
    ("camera",),  # one camera's detect -> track -> scene chain, its sightings and stats
    ("fusion",),  # swipes onto visits, and cameras onto store visits: both branches meet
    ("outbox",),
    ("publish",),
    ("agent",),
    # Above the live pipeline: tools for recorded video reuse its stages, and the command line
    # mounts both.
    ("offline",),
    ("cli",),
)
EDGE_MODULE_STAGE = {"config_check": "config"}  # modules named apart from their stage
EDGE = "storelens.edge"


def edge_stage_rank(module: str) -> tuple[str, int] | None:
    """The stage and rank of an edge module (None for the `storelens.edge` package itself)."""
    if module == EDGE:
        return None
    head = module.removeprefix(EDGE + ".").split(".")[0]
    stage = EDGE_MODULE_STAGE.get(head, head)
    for rank, stages in enumerate(EDGE_STAGES):
        if stage in stages:
            return stage, rank
    raise LookupError(f"{module}: edge stage {stage!r} is not in EDGE_STAGES; place it there")


def stage_violations(files: list[tuple[Path, str]]) -> list[str]:
    bad = []
    for path, module in files:
        own = edge_stage_rank(module)
        for line, name in imported_modules(path, module):
            if not name.startswith(EDGE + ".") or (other := edge_stage_rank(name)) is None:
                continue
            if own is None:
                bad.append(f"{path}:{line} the edge package itself imports stage {other[0]}")
            elif other[0] != own[0] and other[1] >= own[1]:
                bad.append(f"{path}:{line} {own[0]} imports {name} (stage {other[0]})")
    return sorted(set(bad))


def test_every_edge_module_has_a_stage() -> None:
    modules = [module for _, module in package_files(storelens.edge)]
    stages = {rank[0] for module in modules if (rank := edge_stage_rank(module))}
    assert stages == {s for line in EDGE_STAGES for s in line}


def test_edge_stages_import_only_their_own_or_earlier_stages() -> None:
    assert stage_violations(package_files(storelens.edge)) == []


@pytest.mark.parametrize(
    ("source", "module", "caught"),
    [
        ("from storelens.edge.fusion.store_visits import X\n", "storelens.edge.camera.pipeline",
         True),
        ("def f():\n    from .agent import Agent\n", "storelens.edge.outbox", True),
        ("from storelens.edge.sources.frames import F\n", "storelens.edge.cards.reader", True),
        ("from storelens.edge.offline import mot\n", "storelens.edge.agent", True),
        ("from storelens.edge.track import tracker\n", "storelens.edge.config", True),
        ("from .cards import reader\n", "storelens.edge.config_check", True),
        ("from storelens.edge.track import tracker\n", "storelens.edge.camera.pipeline", False),
        ("from .reader import CardReader\n", "storelens.edge.cards.tcp", False),
        ("from storelens.edge.config import C\n", "storelens.edge.sources.frames", False),
        ("from storelens.edge import config\n", "storelens.edge.outbox", False),
    ],
)  # fmt: skip
def test_the_stage_rule_catches_back_edges(
    tmp_path: Path, source: str, module: str, caught: bool
) -> None:
    path = tmp_path / "x.py"
    path.write_text(source)
    assert bool(stage_violations([(path, module)])) is caught


def test_an_unplaced_edge_module_is_an_error() -> None:
    with pytest.raises(LookupError, match="EDGE_STAGES"):
        edge_stage_rank("storelens.edge.newstage.thing")


def test_provisioning_never_imports_tooling() -> None:
    # Provisioning sits beside the CLI root (it spans both sides) but is product: the
    # docker-compose deployment runs it.
    root = Path(storelens.__file__).parent / "cli"
    assert violations([(root / "provision.py", f"{CLI_ROOT}.provision")], TOOLS) == []


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(k, ast.Name) and k.id in {"ImportError", "ModuleNotFoundError"}
               for k in kinds)  # fmt: skip


def test_the_cli_root_hides_no_import_error() -> None:
    # The root mounts in-tree modules: one that fails to import is a bug to see at once, not
    # a command that silently goes missing (the root once wrapped them in try/except).
    root = Path(storelens.__file__).parent / "cli"
    caught = [
        f"{path.name}:{node.lineno}"
        for path in sorted(root.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ExceptHandler) and node.type and _catches_import_error(node)
    ]
    assert len(list(root.rglob("*.py"))) >= 2
    assert caught == []
