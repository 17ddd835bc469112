"""Who may call the API: ops users (roles ``analyst`` < ``admin``), POS devices scoped to
one store, and integrations (other systems that may only report interactions).

Bearer tokens are random (`secrets.token_urlsafe`) and only their SHA-256 is stored, so a
database leak does not leak usable tokens. Passwords are hashed with scrypt (hashlib, no extra
dependency) with a per-user salt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from storelens.cloud.db import Database, IntegrityError, migrations

MIGRATIONS = migrations(
    "auth",
    [
        """
        CREATE TABLE ops_users (
            username TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            disabled {BOOL} NOT NULL DEFAULT 0,
            created_at {REAL} NOT NULL
        );
        CREATE TABLE auth_tokens (
            token_sha256 TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            store TEXT,
            role TEXT,
            created_at {REAL} NOT NULL,
            expires_at {REAL},
            revoked {BOOL} NOT NULL DEFAULT 0
        );
        CREATE INDEX auth_tokens_subject ON auth_tokens (kind, subject)
        """,
        # Ops scope: the stores a user sees, comma-separated (a region, or one store for a
        # store manager); NULL = the whole chain.
        "ALTER TABLE ops_users ADD COLUMN stores TEXT",
    ],
)

Role = Literal["analyst", "admin"]
ROLES: tuple[str, ...] = ("analyst", "admin")  # ascending privilege
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # about 50 ms and 16 MiB per hash


class AuthError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """The caller behind a token."""

    kind: Literal["ops", "pos", "integration"]
    subject: str  # username, the POS device name, or the integration's name
    role: str | None = None  # ops only
    store: str | None = None  # pos only
    stores: tuple[str, ...] | None = None  # ops only: the stores in scope (None = all)

    def has_role(self, role: str) -> bool:
        return self.kind == "ops" and ROLES.index(self.role or "analyst") >= ROLES.index(role)


def parse_scope(text: str | None) -> tuple[str, ...] | None:
    """``"paris,lyon"`` -> ("lyon", "paris"); empty or None -> None (chain-wide)."""
    stores = tuple(sorted({s.strip() for s in (text or "").split(",") if s.strip()}))
    return stores or None


def set_scope(db: Database, username: str, stores: tuple[str, ...] | None) -> None:
    """Limit an ops user to ``stores`` (a region, or one store); None = the whole chain."""
    known = {r["id"] for r in db.query("SELECT id FROM stores")}
    unknown = sorted(set(stores or ()) - known)
    if unknown:
        raise AuthError(f"unknown store(s): {', '.join(unknown)}")
    if not db.execute(
        "UPDATE ops_users SET stores = ? WHERE username = ?",
        (",".join(stores) if stores else None, username),
    ):
        raise AuthError(f"no user {username}")


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$digest``: the cost parameters travel with the hash, so they can be
    raised later without locking out existing users."""
    salt = secrets.token_bytes(16)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        probe = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return hmac.compare_digest(probe.hex(), digest)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    db: Database, username: str, password: str, role: str, stores: tuple[str, ...] | None = None
) -> None:
    """An ops user; ``stores`` limits what they see (a region or one store; None = all)."""
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise AuthError("password must have at least 8 characters")
    if not username or len(username) > 64:
        raise AuthError("username must have 1-64 characters")
    try:
        with db.transaction():
            db.execute(
                "INSERT INTO ops_users (username, password_hash, role, created_at)"
                " VALUES (?, ?, ?, ?)",
                (username, hash_password(password), role, time.time()),
            )
            if stores:
                set_scope(db, username, stores)
    except IntegrityError:
        raise AuthError(f"user {username} exists") from None


def set_password(db: Database, username: str, password: str) -> None:
    """Replace an ops user's password (`storelens cloud user-password`); their sessions and
    API tokens stay valid until they expire or are revoked."""
    if len(password) < 8:
        raise AuthError("password must have at least 8 characters")
    if not db.execute(
        "UPDATE ops_users SET password_hash = ? WHERE username = ?",
        (hash_password(password), username),
    ):
        raise AuthError(f"no user {username}")


def login(db: Database, username: str, password: str, ttl_s: float) -> str:
    """Exchange a password for a bearer token valid ``ttl_s`` seconds."""
    row = db.query_one("SELECT * FROM ops_users WHERE username = ?", (username,))
    # Hash even for unknown users so timing does not reveal which usernames exist.
    stored = row["password_hash"] if row else hash_password("x" * 12)
    if not check_password(password, stored) or row is None or row["disabled"]:
        raise AuthError("invalid username or password")
    return _issue(db, "ops", username, role=row["role"], expires_at=time.time() + ttl_s)


def create_pos_token(db: Database, store: str, device_name: str) -> str:
    """A long-lived token for one POS device of one store (revoke to retire it)."""
    if db.scalar("SELECT count(*) FROM stores WHERE id = ?", (store,)) == 0:
        raise AuthError(f"unknown store {store}")
    return _issue(db, "pos", device_name, store=store)


def create_integration_token(db: Database, name: str) -> str:
    """A long-lived token for another system (web shop, CRM, events tool) that may only report
    interactions (POST /api/v1/interactions): it reads nothing."""
    if not name or len(name) > 64:
        raise AuthError("integration name must have 1-64 characters")
    return _issue(db, "integration", name)


def create_api_token(db: Database, username: str) -> str:
    """A long-lived token for an ops user's scripts (same role as the user)."""
    row = db.query_one("SELECT role FROM ops_users WHERE username = ?", (username,))
    if row is None:
        raise AuthError(f"no user {username}")
    return _issue(db, "ops", username, role=row["role"])


def _issue(
    db: Database,
    kind: str,
    subject: str,
    *,
    role: str | None = None,
    store: str | None = None,
    expires_at: float | None = None,
) -> str:
    token = secrets.token_urlsafe(32)
    db.execute(
        "INSERT INTO auth_tokens (token_sha256, kind, subject, store, role, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_digest(token), kind, subject, store, role, time.time(), expires_at),
    )
    return token


def authenticate(db: Database, token: str) -> Principal | None:
    """The principal for a bearer token, or None if unknown, revoked or expired."""
    row = db.query_one(
        "SELECT kind, subject, store, role, expires_at, revoked FROM auth_tokens"
        " WHERE token_sha256 = ?",
        (_digest(token),),
    )
    if row is None or row["revoked"] or (row["expires_at"] and row["expires_at"] < time.time()):
        return None
    if row["kind"] == "ops":
        user = db.query_one(
            "SELECT role, disabled, stores FROM ops_users WHERE username = ?", (row["subject"],)
        )
        if user is None or user["disabled"]:
            return None
        return Principal(
            "ops", row["subject"], role=user["role"], stores=parse_scope(user["stores"])
        )
    if row["kind"] == "integration":
        return Principal("integration", row["subject"])
    return Principal("pos", row["subject"], store=row["store"])


def revoke(db: Database, token: str) -> bool:
    return bool(
        db.execute("UPDATE auth_tokens SET revoked = 1 WHERE token_sha256 = ?", (_digest(token),))
    )


def revoke_pos_device(db: Database, store: str, device_name: str) -> int:
    """Retire a lost or replaced POS device: every token of that device of that store stops
    working, open push streams included (DELETE /api/v1/auth/pos-tokens/{store}/{device}).
    Device names repeat across stores (every store has a till-1): the store is part of the key."""
    return db.execute(
        "UPDATE auth_tokens SET revoked = 1 WHERE kind = 'pos' AND store = ? AND subject = ?",
        (store, device_name),
    )
