"""Domains declare their hooks (`HOOKS`); the storage root collects them into a `Hooks` value
each process's `Services` holds. No module holds a hook: importing every cloud module and
migrating a database registers nothing, and two `Services` in one process keep their own."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from storelens.cloud import push
from storelens.cloud.commerce import members
from storelens.cloud.db.schema import COMPONENTS, declared_hooks
from storelens.cloud.hooks import Hooks
from storelens.cloud.personalization import scoring
from storelens.cloud.services import Services, hooks_for
from storelens.cloud.settings import Settings
from storelens.pseudonym import PseudonymKey


def test_importing_every_cloud_module_registers_no_hook(tmp_path) -> None:
    # Every module imported, a database migrated (which once installed the hooks into
    # module-level lists): no module-level value, but a component's own `HOOKS`
    # declaration, holds a declared hook.
    code = f"""
import importlib, pkgutil, sys
import storelens.cloud
for m in pkgutil.walk_packages(storelens.cloud.__path__, "storelens.cloud."):
    importlib.import_module(m.name)
from storelens.cloud.db import connect
from storelens.cloud.db.schema import COMPONENTS
connect("sqlite:///{tmp_path / "a.db"}").close()
declared = {{id(h) for n in COMPONENTS for _, h in getattr(sys.modules[n], "HOOKS", ())}}
held = [
    (name, attr)
    for name, module in list(sys.modules.items()) if name.startswith("storelens.cloud")
    for attr, value in vars(module).items()
    if attr != "HOOKS" and isinstance(value, list | tuple | set | dict)
    and any(id(v) in declared for v in (value.values() if isinstance(value, dict) else value))
]
assert len(declared) >= 10 and held == [], held
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_declared_hooks_hold_every_declared_hook_once() -> None:
    hooks = declared_hooks()
    declared = [
        (point, hook)
        for name in COMPONENTS
        for point, hook in getattr(importlib.import_module(name), "HOOKS", ())
    ]
    assert len(declared) >= 10
    for point, hook in declared:
        assert hooks[point].count(hook) == 1, (point, hook)


def test_an_unknown_hook_point_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown hook point 'order_paid'"):
        Hooks({"x": [("order_paid", print)]})


def test_two_services_in_one_process_run_their_own_hooks(db) -> None:
    # A process whose root leaves scoring out (as one could for a deployment without it)
    # does not award enrollment points, while another process's full root in the same
    # interpreter does: the hooks belong to the Services, not to the modules.
    without = tuple(c for c in COMPONENTS if c != "storelens.cloud.personalization.scoring")
    key = PseudonymKey("k1", b"\x01" * 32)
    bare = Services(Settings(), db, push.PushHub(), hooks=declared_hooks(without))
    try:
        assert (
            hooks_for(db) is bare.hooks
            and scoring._on_enrolled not in bare.hooks["member_enrolled"]
        )
        ann = members.enroll(db, key, members.Enrollment(card_number="6012000011112222"))
    finally:
        bare.close()
    full = Services(Settings(), db, push.PushHub())
    try:
        assert full.hooks is not bare.hooks
        bob = members.enroll(db, key, members.Enrollment(card_number="6012000033334444"))
    finally:
        full.close()
    assert scoring.score(db, ann["id"]) == 0
    assert scoring.score(db, bob["id"]) > 0


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


def test_no_cloud_module_holds_process_state() -> None:
    # What a process shares (push hub, event hooks, offer policy, routing, recommender,
    # impressions) lives in its `Services` (cloud/services.py), not in module globals such as
    # the `push._hub`, `intake._config` and hook lists of before: two apps in one process
    # (tests, the demo) stay apart.
    from pathlib import Path

    import storelens.cloud

    root = Path(storelens.cloud.__file__).parent
    state = {
        f"{path.relative_to(root)}: {name}"
        for path in sorted(root.rglob("*.py"))
        for name in _module_state(path)
    }
    assert state == set()
