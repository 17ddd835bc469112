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
