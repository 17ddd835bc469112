"""`storelens cloud user-password`: an ops user's password can be replaced (a forgotten admin
password would otherwise lock that login out for good), on both backends."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from storelens.cli import app
from storelens.cloud.api import principals as auth


def test_a_new_password_replaces_the_old_one(db, db_url: str) -> None:
    auth.create_user(db, "ana", "first-password", "admin")
    result = CliRunner().invoke(
        app, ["cloud", "user-password", "ana", "--db", db_url],
        input="second-password\nsecond-password\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "password of ana changed" in result.output
    assert auth.login(db, "ana", "second-password", ttl_s=60)
    with pytest.raises(auth.AuthError):
        auth.login(db, "ana", "first-password", ttl_s=60)


@pytest.mark.parametrize(
    ("user", "password", "error"),
    [("nobody", "long-enough", "no user nobody"), ("ana", "short", "at least 8 characters")],
)
def test_unknown_users_and_short_passwords_are_refused(
    db, db_url: str, user: str, password: str, error: str
) -> None:
    auth.create_user(db, "ana", "first-password", "admin")
    result = CliRunner().invoke(
        app, ["cloud", "user-password", user, "--db", db_url], input=f"{password}\n{password}\n"
    )
    assert result.exit_code == 1
    assert error in result.output
    assert auth.login(db, "ana", "first-password", ttl_s=60)
