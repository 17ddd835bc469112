"""`storelens provision device STORE DEVICE`: one MQTT credential, ACL and config per device.

Each device gets its own broker username ``{device}@{store}`` (``@`` cannot occur in an
identifier, so two devices can never collide), a random password kept in a file beside its
config, the Mosquitto ACL lines that confine it to its own topics, and a validated
`DeviceConfig` skeleton that references the password by file, never inline.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import typer
import yaml

from storelens.contract import topics

app = typer.Typer(no_args_is_help=True)

# Mosquitto 2's own defaults for `$7$` (PBKDF2-SHA512) lines. The low iteration count is
# safe here because the passwords are 256-bit random, not human-chosen: nothing to brute-force.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProvisionError(ValueError):
    pass


def device_username(store: str, device: str) -> str:
    return f"{device}@{store}"


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """The hash part of a Mosquitto password-file line, as `mosquitto_passwd` writes it."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_line(username: str, password: str) -> str:
    if ":" in username or "\n" in username:
        raise ProvisionError(f"username {username!r} cannot hold ':' or newlines")
    return f"{username}:{mosquitto_hash(password)}"


def device_acl(store: str, device: str) -> str:
    """ACL block: publish only its own events/status/availability, read only its own cmd and ack."""
    return (
        "\n".join(
            [
                f"user {device_username(store, device)}",
                f"topic write {topics.events(store, device)}",
                f"topic write {topics.status(store, device)}",
                f"topic write {topics.availability(store, device)}",
                f"topic read {topics.cmd(store, device)}",
                f"topic read {topics.ack(store, device)}",
            ]
        )
        + "\n"
    )


@dataclass(frozen=True)
class Provisioned:
    username: str
    password: str
    password_file: Path
    config_file: Path
    acl_file: Path
    passwd_line_file: Path


def _check_ident(kind: str, value: str) -> None:
    if not _IDENT.match(value):
        raise ProvisionError(
            f"{kind} {value!r} must be 1-64 letters, digits, '_', '.' or '-' and start alphanumeric"
        )


def config_skeleton(
    store: str,
    device: str,
    *,
    password_file: Path,
    mqtt_host: str,
    mqtt_port: int,
    ca_file: Path | None,
    cameras: list[tuple[str, str]],
) -> dict:
    """A DeviceConfig document (validated before it is written)."""
    from storelens.edge.config import parse_config

    mqtt: dict = {
        "host": mqtt_host,
        "port": mqtt_port,
        "username": device_username(store, device),
        "password_file": str(password_file),
    }
    if ca_file is not None:
        mqtt["tls"] = {"ca_file": str(ca_file)}
    doc = {
        "store": store,
        "device": device,
        "mqtt": mqtt,
        "cameras": [{"id": cid, "source": src} for cid, src in cameras],
        "outbox": {"path": f"var/{store}-{device}-outbox.db"},
    }
    parse_config(doc, f"{store}/{device}")  # raises ConfigError listing every problem
    return doc


def merge_block(existing: str, username: str, block: str, *, kind: str) -> str:
    """Replace this user's entry in a password or ACL file, keeping everyone else's.

    Re-provisioning a device rotates its password instead of adding a second entry.
    """
    if kind == "passwd":
        kept = [ln for ln in existing.splitlines() if ln.split(":", 1)[0] != username]
        return "\n".join([*kept, block.rstrip("\n")]) + "\n"
    # In a Mosquitto ACL file a `user` line governs every line up to the next `user` line
    # (`pattern` lines are global), so that is the extent of a device's block.
    out: list[str] = []
    skipping = False
    for line in existing.splitlines():
        stripped = line.strip()
        if stripped.startswith("user "):
            skipping = stripped[5:].strip() == username
        elif stripped.startswith("pattern "):
            skipping = False
        if not skipping:
            out.append(line)
    text = "\n".join(out).rstrip("\n")
    return (text + "\n\n" if text else "") + block


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def provision_device(
    store: str,
    device: str,
    out: Path,
    *,
    mqtt_host: str = "127.0.0.1",
    mqtt_port: int = 1883,
    ca_file: Path | None = None,
    cameras: list[tuple[str, str]] | None = None,
    passwd_file: Path | None = None,
    acl_file: Path | None = None,
    db_url: str | None = None,
) -> Provisioned:
    _check_ident("store", store)
    _check_ident("device", device)
    cams = cameras or [("entrance", "0")]
    for cid, _src in cams:
        _check_ident("camera", cid)
    username = device_username(store, device)
    password = secrets.token_urlsafe(32)
    out = out.resolve()
    secret = out / f"{device}.mqtt-password"
    doc = config_skeleton(
        store,
        device,
        password_file=secret,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        ca_file=ca_file,
        cameras=cams,
    )
    line = password_line(username, password)
    acl = device_acl(store, device)
    out.mkdir(parents=True, exist_ok=True)
    _write_private(secret, password + "\n")
    config_file = out / f"{device}.yaml"
    config_file.write_text(
        f"# storelens device config for {username}; generated by `storelens provision`.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    line_file = out / f"{device}.passwd"
    _write_private(line_file, line + "\n")
    acl_out = out / f"{device}.acl"
    acl_out.write_text(acl)
    if passwd_file is not None:
        current = passwd_file.read_text() if passwd_file.exists() else ""
        _write_private(passwd_file, merge_block(current, username, line, kind="passwd"))
    if acl_file is not None:
        current = acl_file.read_text() if acl_file.exists() else ""
        acl_file.write_text(merge_block(current, username, acl, kind="acl"))
    if db_url is not None:
        _register(db_url, store, device, username)
    return Provisioned(username, password, secret, config_file, acl_out, line_file)


SERVICE_ACCOUNTS = ("ingest", "api", "health")


def provision_service(
    name: str, out: Path, *, passwd_file: Path, password: str | None = None
) -> Path:
    """Create (or rotate) a service account's password; the ACL for it is static in deploy/."""
    if name not in SERVICE_ACCOUNTS:
        raise ProvisionError(
            f"unknown service account {name!r}; one of {', '.join(SERVICE_ACCOUNTS)}"
        )
    password = password or secrets.token_urlsafe(32)
    secret = out.resolve() / f"{name}.mqtt-password"
    _write_private(secret, password + "\n")
    current = passwd_file.read_text() if passwd_file.exists() else ""
    _write_private(
        passwd_file, merge_block(current, name, password_line(name, password), kind="passwd")
    )
    return secret


def _register(db_url: str, store: str, device: str, username: str) -> None:
    """Register the device with the cloud, which only accepts events from registered devices."""
    from storelens.cloud.db import connect
    from storelens.cloud.ingest.device_registry import register_device

    db = connect(db_url)
    try:
        register_device(db, store, device, description=f"MQTT user {username}")
    finally:
        db.close()


def _camera(value: str) -> tuple[str, str]:
    cid, sep, src = value.partition("=")
    if not sep or not cid or not src:
        raise typer.BadParameter(f"{value!r}: expected ID=SOURCE, e.g. entrance=rtsp://10.0.0.5/1")
    return cid, src


@app.command("device")
def device_command(
    store: str = typer.Argument(..., help="Store identifier."),
    device: str = typer.Argument(..., help="Device identifier, unique within the store."),
    out: Path = typer.Option(Path("provisioned"), help="Folder for the config, secret and lines."),
    mqtt_host: str = typer.Option("127.0.0.1", help="Broker host the device connects to."),
    mqtt_port: int = typer.Option(1883, help="Broker port (8883 for the TLS listener)."),
    ca_file: Path | None = typer.Option(None, help="CA certificate for a TLS broker."),
    camera: list[str] = typer.Option([], help="Camera as ID=SOURCE (repeatable)."),
    passwd_file: Path | None = typer.Option(
        None, help="Merge the credential into this Mosquitto password file."
    ),
    acl_file: Path | None = typer.Option(
        None, help="Merge the ACL block into this Mosquitto ACL file."
    ),
    db: str | None = typer.Option(None, help="Cloud database URL to register the device in."),
) -> None:
    """Create a device's MQTT credential, ACL lines and config skeleton."""
    from storelens.edge.config import ConfigError

    try:
        result = provision_device(
            store,
            device,
            out,
            mqtt_host=mqtt_host,
            mqtt_port=mqtt_port,
            ca_file=ca_file,
            cameras=[_camera(c) for c in camera] or None,
            passwd_file=passwd_file,
            acl_file=acl_file,
            db_url=db,
        )
    except (ProvisionError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"username:      {result.username}")
    typer.echo(f"config:        {result.config_file}")
    typer.echo(f"password file: {result.password_file} (mode 600; copy to the device only)")
    typer.echo(f"passwd line:   {result.passwd_line_file}")
    typer.echo(f"acl lines:     {result.acl_file}")
    if passwd_file or acl_file:
        typer.echo("merged into the broker files; reload Mosquitto (SIGHUP) to apply")


@app.command("service")
def service_command(
    name: str = typer.Argument(..., help="Service account: ingest, api or health."),
    passwd_file: Path = typer.Option(..., help="Mosquitto password file to merge the line into."),
    out: Path = typer.Option(Path("provisioned"), help="Folder for NAME.mqtt-password."),
    password_env: str | None = typer.Option(
        None, help="Take the password from this environment variable instead of a random one."
    ),
) -> None:
    """Create or rotate a service account's MQTT password (ACLs: deploy/mosquitto/acl)."""
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            typer.echo(f"error: environment variable {password_env} is empty or unset", err=True)
            raise typer.Exit(2)
    try:
        secret = provision_service(name, out, passwd_file=passwd_file, password=password)
    except ProvisionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{name}: password in {secret}; line merged into {passwd_file}")


@app.command("pseudonym-key")
def pseudonym_key_command(
    path: Path = typer.Argument(..., help="Where to write the key (hex, mode 600)."),
    force: bool = typer.Option(False, help="Overwrite an existing key (re-keys every member)."),
) -> None:
    """Create the member-card HMAC key shared by devices and the cloud."""
    from storelens.pseudonym import generate_key_file

    if path.exists() and not force:
        typer.echo(f"{path} exists; keeping it (a new key would orphan every member's token)")
        return
    typer.echo(str(generate_key_file(path)))
