"""Domains declare their hooks (`HOOKS`); the storage root installs them. Importing a domain
registers nothing, and after `connect()` every declared hook is in place exactly once."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from storelens.cloud import hooks
from storelens.cloud.db import connect
from storelens.cloud.db.schema import COMPONENTS


def test_importing_a_domain_registers_no_hook() -> None:
    code = (
        "import storelens.cloud.personalization.scoring, storelens.cloud.personalization.offers\n"
        "import storelens.cloud.fulfillment, storelens.cloud.db.schema\n"
        "from storelens.cloud.commerce import members, orders\n"
        "from storelens.cloud.ingest import worker as ingest\n"
        "lists = (ingest.on_events_stored, orders.on_order_created, members.on_member_forgotten,"
        " members.on_member_enrolled, members.on_tracking_withdrawn)\n"
        "assert all(h == [] for h in lists), lists\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_connect_installs_every_declared_hook_once(tmp_path) -> None:
    connect(f"sqlite:///{tmp_path / 'a.db'}").close()
    connect(f"sqlite:///{tmp_path / 'b.db'}").close()  # a second database adds nothing
    declared = [
        (point, hook)
        for name in COMPONENTS
        for point, hook in getattr(importlib.import_module(name), "HOOKS", ())
    ]
    assert len(declared) >= 10
    for point, hook in declared:
        module, attr = hooks.POINTS[point]
        installed = getattr(importlib.import_module(module), attr)
        assert installed.count(hook) == 1, (point, hook)


def test_an_unknown_hook_point_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown hook point 'order_paid'"):
        hooks.install([("order_paid", print)], owner="x")


def _module_state(path) -> list[str]:  # noqa: ANN001 - a Path
    """What a module may hold as process state: ``global`` rebinding anywhere, and top-level
    names bound to None (a slot filled at run time), an empty list or set (a registry).
    Empty dicts are left out: they are memo caches here (derived, the same in every
    process), as in `ingest/events.py`."""
    import ast

    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found += [f"global {name}" for name in node.names]
    for node in tree.body:
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        empty = (
            (isinstance(value, ast.List | ast.Set) and not value.elts)
            or (isinstance(value, ast.Constant) and value.value is None)
            or (
                isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id in {"list", "set"} and not value.args
            )
        )  # fmt: skip
        if empty:
            found += [t.id for t in targets if isinstance(t, ast.Name)]
    return found


def test_no_cloud_module_holds_process_state_but_the_hook_points() -> None:
    # What a process shares (push hub, offer policy, routing, recommender, impressions) lives
    # in its `Services` (cloud/services.py), not in module globals such as the `push._hub`
    # and `intake._config` of before: two apps in one process (tests, the demo) stay apart.
    # The hook points are the one exception: static, the same in every process.
    from pathlib import Path

    import storelens.cloud

    root = Path(storelens.cloud.__file__).parent
    points = {attr for _module, attr in hooks.POINTS.values()}
    state = {
        f"{path.relative_to(root)}: {name}"
        for path in sorted(root.rglob("*.py"))
        for name in _module_state(path)
        if name not in points
    }
    assert state == set()
