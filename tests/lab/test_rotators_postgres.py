"""The ``postgres`` rotator against the lab's real PostgreSQL: single-user and alternating, no mocks.

The alternating test is the zero-downtime proof of issue 5: a client thread keeps connecting with whichever
credential the test says is current (as a consumer would after ESO syncs) and must see zero failed logins
through two full rotations, while the old credential stays valid until ``revoke_old`` and is dead after it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from chamberlain.intent.model import SecretIntent
from chamberlain.rotation.rotators import (
    CredentialTestFailed,
    RotationContext,
    TargetRejected,
    TargetUnavailable,
)
from chamberlain.rotation.rotators.postgres import PostgresRotator, PrivilegedTarget, alternate_of

pytestmark = pytest.mark.lab

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    admin: dict[str, str]


@pytest.fixture(scope="module")
def server(postgres_dsn: str) -> Server:
    info = conninfo_to_dict(postgres_dsn)
    return Server(
        str(info["host"]), int(str(info["port"])), {"username": str(info["user"]), "password": str(info["password"])}
    )


@pytest.fixture
def role(postgres_dsn: str) -> Iterator[tuple[str, str]]:
    """A fresh application role with a password and a table it owns; dropped (with its alternate) afterwards."""
    name, first = f"app_{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(first)))
        admin.execute(sql.SQL("CREATE TABLE {} (v int)").format(sql.Identifier(f"{name}_data")))
        admin.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(f"{name}_data"), sql.Identifier(name))
        )
    yield name, first
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        for user in (alternate_of(name), name):
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone():
                admin.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(user)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


def intent(role: str, port: int, strategy: str, tls: dict[str, str] | None = None) -> SecretIntent:
    return SecretIntent.model_validate(
        {
            "apiVersion": "chamberlain.dev/v1alpha1",
            "kind": "SecretIntent",
            "metadata": {"name": "app-db", "namespace": "shop"},
            "spec": {
                "owner": "shop",
                "purpose": "application database login",
                "classification": "runtime",
                "source": {
                    "generate": {
                        "username": {"type": "fixed-name", "name": role},
                        "password": {"type": "password", "length": 32},
                    }
                },
                "target": {
                    "postgres": {
                        "host": "127.0.0.1",
                        "port": port,
                        "role": role,
                        "adminIntent": "pg-admin",
                        "strategy": strategy,
                        # the lab PostgreSQL speaks plain text unless a test turns TLS on: it opts out, explicitly
                        "tls": tls or {"mode": "disable"},
                    }
                },
            },
        }
    )


def can_login(server: Server, user: str, password: str) -> bool:
    try:
        with psycopg.connect(
            host=server.host, port=server.port, dbname="postgres", user=user, password=password, connect_timeout=5
        ) as conn:
            return conn.execute("SELECT session_user").fetchone() == (user,)
    except psycopg.OperationalError:
        return False


def ctx_for(it: SecretIntent, server: Server, current: dict[str, str]) -> RotationContext:
    return RotationContext(intent=it, now=NOW, current=current, admin=server.admin)


# --------------------------------------------------------------------------------------------------- single-user


def test_single_user_new_password_works_and_old_fails_after_revoke(
    server: Server, role: tuple[str, str], postgres_dsn: str
) -> None:
    name, first = role
    it, rotator = intent(name, server.port, "single-user"), PostgresRotator()
    old = {"username": name, "password": first}
    ctx = ctx_for(it, server, old)

    pending = rotator.create_pending(ctx)
    assert pending.data["username"] == name and pending.data["password"] != first
    assert pending.rotated == {"password"}
    assert can_login(server, name, first), "create_pending must not touch the target"

    rotator.set_at_target(ctx, pending)
    rotator.set_at_target(ctx, pending)  # a resumed workflow repeats the step: same state
    rotator.test(ctx, pending)
    assert can_login(server, name, pending.data["password"])
    # Only a SCRAM verifier computed client side reached the server; the plaintext never did.
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        stored = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()
    assert stored is not None and str(stored[0]).startswith("SCRAM-SHA-256$")
    assert pending.data["password"] not in str(stored[0])

    promoted = ctx_for(it, server, dict(pending.data))
    rotator.revoke_old(promoted, old)
    rotator.revoke_old(promoted, old)
    assert not can_login(server, name, first)
    assert can_login(server, name, pending.data["password"])


def test_test_step_rejects_a_wrong_password_without_echoing_it(server: Server, role: tuple[str, str]) -> None:
    name, first = role
    it, rotator = intent(name, server.port, "single-user"), PostgresRotator()
    ctx = ctx_for(it, server, {"username": name, "password": first})
    pending = rotator.create_pending(ctx)  # never set at the target
    with pytest.raises(CredentialTestFailed) as caught:
        rotator.test(ctx, pending)
    assert caught.value.retryable
    assert pending.data["password"] not in str(caught.value)
    assert caught.value.__suppress_context__


def test_wrong_admin_password_is_permanent_and_unreachable_server_is_retryable(
    server: Server, role: tuple[str, str]
) -> None:
    name, first = role
    wrong = secrets.token_urlsafe(16)
    rotator = PostgresRotator(timeout_seconds=2)
    it = intent(name, server.port, "single-user")
    bad_admin = RotationContext(
        it, NOW, {"username": name, "password": first}, admin={**server.admin, "password": wrong}
    )
    pending = rotator.create_pending(bad_admin)
    with pytest.raises(TargetRejected) as rejected:
        rotator.set_at_target(bad_admin, pending)
    assert not rejected.value.retryable and wrong not in str(rejected.value)
    assert can_login(server, name, first)

    closed_port = intent(name, 1, "single-user")
    with pytest.raises(TargetUnavailable) as unavailable:
        rotator.set_at_target(ctx_for(closed_port, server, {"username": name, "password": first}), pending)
    assert unavailable.value.retryable


# --------------------------------------------------------------------------------------------------- alternating


class Client(threading.Thread):
    """A consumer: connects in a loop with whatever credential it was last given, and counts failures."""

    def __init__(self, server: Server, table: str, user: str, password: str) -> None:
        super().__init__(daemon=True)
        self.server, self.table = server, table
        self._lock = threading.Lock()
        self._cred = (user, password)
        self._halt = threading.Event()
        self.attempts = 0
        self.failures: list[str] = []

    def give(self, user: str, password: str) -> None:
        with self._lock:
            self._cred = (user, password)

    def run(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                user, password = self._cred
            self.attempts += 1
            try:
                with psycopg.connect(
                    host=self.server.host,
                    port=self.server.port,
                    dbname="postgres",
                    user=user,
                    password=password,
                    connect_timeout=5,
                ) as conn:
                    conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.table))).fetchone()
            except psycopg.Error as exc:
                self.failures.append(f"{user}: {type(exc).__name__} {exc.sqlstate}")
            time.sleep(0.005)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def test_alternating_rotation_has_zero_failed_logins(server: Server, role: tuple[str, str], postgres_dsn: str) -> None:
    name, first = role
    it, rotator = intent(name, server.port, "alternating"), PostgresRotator()
    current = {"username": name, "password": first}
    client = Client(server, f"{name}_data", name, first)
    client.start()
    users_seen = []
    try:
        for _ in range(2):
            ctx = ctx_for(it, server, current)
            pending = rotator.create_pending(ctx)
            new_user, new_password = pending.data["username"], pending.data["password"]
            assert new_user != current["username"] and pending.rotated == {"username", "password"}
            users_seen.append(new_user)

            rotator.set_at_target(ctx, pending)
            rotator.set_at_target(ctx, pending)  # idempotent repeat
            rotator.test(ctx, pending)
            time.sleep(0.2)

            client.give(new_user, new_password)  # promote + ESO sync: consumers switch over
            time.sleep(0.2)
            # maxOverlap: the old credential still works until revoke_old.
            assert can_login(server, current["username"], current["password"])

            promoted = ctx_for(it, server, dict(pending.data))
            rotator.revoke_old(promoted, current)
            rotator.revoke_old(promoted, current)
            assert not can_login(server, current["username"], current["password"])
            assert can_login(server, new_user, new_password)
            time.sleep(0.2)
            current = dict(pending.data)
    finally:
        client.stop()
    assert users_seen == [alternate_of(name), name]
    assert client.attempts > 20, "the client barely ran; the zero-failure claim would be empty"
    assert client.failures == [], client.failures[:5]
    print(f"\n[alternating] {client.attempts} client logins across two rotations, 0 failures")

    # The alternate runs as the base role, so what it creates belongs to the base role and the users stay twins.
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(alternate_of(name)), sql.Literal(first)
            )
        )
    with psycopg.connect(
        host=server.host, port=server.port, dbname="postgres", user=alternate_of(name), password=first
    ) as conn:
        row: Any = conn.execute("SELECT session_user, current_user").fetchone()
    assert row == (alternate_of(name), name)


# --------------------------------------------------------------------------------------------------- trust boundaries


@pytest.fixture
def made_roles(postgres_dsn: str) -> Iterator[list[str]]:
    """Roles a test creates (privileged ones included), dropped afterwards."""
    made: list[str] = []
    yield made
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        for user in made:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


def _create_role(postgres_dsn: str, made: list[str], options: str) -> tuple[str, str]:
    name, password = f"t_{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN " + options + " PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
    made.append(name)
    return name, password


@pytest.mark.parametrize("privilege", ["SUPERUSER", "CREATEROLE", "REPLICATION", "BYPASSRLS"])
def test_a_privileged_target_role_is_refused(server: Server, postgres_dsn: str, made_roles: list[str],
                                             privilege: str) -> None:
    name, first = _create_role(postgres_dsn, made_roles, privilege)
    rotator = PostgresRotator()
    ctx = ctx_for(intent(name, server.port, "single-user"), server, {"username": name, "password": first})
    pending = rotator.create_pending(ctx)
    with pytest.raises(PrivilegedTarget) as refused:
        rotator.set_at_target(ctx, pending)
    assert not refused.value.retryable, "permanent: the run fails and its record and ledger entry say why"
    assert f"role {name} is privileged" in str(refused.value) and pending.data["password"] not in str(refused.value)
    assert can_login(server, name, first), "nothing was changed"
    # the alternating strategy too, even before its alternate user exists
    alt = ctx_for(intent(name, server.port, "alternating"), server, {"username": name, "password": first})
    with pytest.raises(PrivilegedTarget):
        rotator.set_at_target(alt, rotator.create_pending(alt))


def test_the_admin_itself_is_refused(server: Server, postgres_dsn: str, made_roles: list[str]) -> None:
    # a database admin that is no superuser (CREATEROLE is enough to change other roles' passwords)
    admin, admin_password = _create_role(postgres_dsn, made_roles, "CREATEROLE")
    rotator = PostgresRotator()
    ctx = RotationContext(intent(admin, server.port, "single-user"), NOW, {"username": admin, "password": "x"},
                          admin={"username": admin, "password": admin_password})
    with pytest.raises(PrivilegedTarget) as refused:
        rotator.set_at_target(ctx, rotator.create_pending(ctx))
    assert "admin's own session user" in str(refused.value)
    assert can_login(server, admin, admin_password)
    # and the lab superuser, named as a target through its own credential
    superuser = server.admin["username"]
    ctx = ctx_for(intent(superuser, server.port, "single-user"), server,
                  {"username": superuser, "password": server.admin["password"]})
    with pytest.raises(PrivilegedTarget):
        rotator.set_at_target(ctx, rotator.create_pending(ctx))
    assert can_login(server, superuser, server.admin["password"])


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pg")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def tls_on(lab: Any, postgres_dsn: str) -> Iterator[str]:
    """The lab PostgreSQL with TLS turned on at runtime (ALTER SYSTEM + reload, no restart): a server certificate
    for 127.0.0.1 from a fresh CA, whose PEM the test gets; turned off again afterwards."""
    data_dir: Path = lab.lab.postgres.data_dir
    ca, ca_key = _ca("chamberlain test pg CA")
    cert_pem, key_pem = _leaf(ca, ca_key)
    owner = data_dir.stat()
    paths = {"ssl_cert_file": data_dir / "test-server.crt", "ssl_key_file": data_dir / "test-server.key"}
    for path, data in ((paths["ssl_cert_file"], cert_pem), (paths["ssl_key_file"], key_pem)):
        path.write_bytes(data)
        path.chmod(0o600)
        os.chown(path, owner.st_uid, owner.st_gid)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        for setting, path in paths.items():
            admin.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(setting), sql.Literal(str(path))))
        admin.execute("ALTER SYSTEM SET ssl = on")
        admin.execute("SELECT pg_reload_conf()")
    time.sleep(1.0)
    try:
        yield ca.public_bytes(serialization.Encoding.PEM).decode()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True, sslmode="disable") as admin:
            for setting in ("ssl", *paths):
                admin.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(setting)))
            admin.execute("SELECT pg_reload_conf()")
        for path in paths.values():
            path.unlink(missing_ok=True)


def test_verify_full_with_the_intents_ca_and_a_wrong_ca_fails(server: Server, role: tuple[str, str],
                                                              tls_on: str) -> None:
    name, first = role
    rotator = PostgresRotator(timeout_seconds=3)
    it = intent(name, server.port, "single-user", tls={"mode": "verify-full", "caBundle": tls_on})
    ctx = ctx_for(it, server, {"username": name, "password": first})
    pending = rotator.create_pending(ctx)
    rotator.set_at_target(ctx, pending)
    rotator.test(ctx, pending)
    # verify-full cannot fall back to plain text: the server really speaks TLS now
    with psycopg.connect(host=server.host, port=server.port, dbname="postgres", user=server.admin["username"],
                         password=server.admin["password"], sslmode="require", connect_timeout=3) as check:
        assert check.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)

    wrong_ca, _ = _ca("some other CA")
    wrong = intent(name, server.port, "single-user",
                   tls={"mode": "verify-full", "caBundle": wrong_ca.public_bytes(serialization.Encoding.PEM).decode()})
    wrong_ctx = ctx_for(wrong, server, {"username": name, "password": pending.data["password"]})
    again = rotator.create_pending(wrong_ctx)
    with pytest.raises(TargetUnavailable) as failed:
        rotator.set_at_target(wrong_ctx, again)
    assert server.admin["password"] not in str(failed.value)
    # the system trust store does not know the lab CA either
    system = ctx_for(intent(name, server.port, "single-user", tls={"mode": "verify-full"}), server,
                     {"username": name, "password": pending.data["password"]})
    with pytest.raises(TargetUnavailable):
        rotator.set_at_target(system, again)
    assert can_login(server, name, pending.data["password"]), "the failed attempts changed nothing"
