"""Migrations run in the order the storage root declares, whatever was imported first."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "early",
    ["storelens.cloud.db.retention", "storelens.cloud.personalization.scoring"],
)
def test_importing_a_domain_before_connect_does_not_reorder_migrations(pg_url, early) -> None:
    # retention partitions ``events``: registered first, it ran before the table existed.
    code = (
        f"import {early}\n"
        "import sys\n"
        "from storelens.cloud.db import connect\n"
        "db = connect(sys.argv[1])\n"
        'assert db.scalar("SELECT count(*) FROM events") == 0\n'
        "db.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, pg_url], check=True, timeout=120)
