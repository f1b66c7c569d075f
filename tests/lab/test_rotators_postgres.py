"""The ``postgres`` rotator against the lab's real PostgreSQL: single-user and alternating, no mocks.

The alternating test is the zero-downtime proof of issue 5: a client thread keeps connecting with whichever
credential the test says is current (as a consumer would after ESO syncs) and must see zero failed logins
through two full rotations, while the old credential stays valid until ``revoke_old`` and is dead after it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from chamberlain.intent.model import SecretIntent
from chamberlain.rotation.rotators import (
    CredentialTestFailed,
    RotationContext,
    TargetRejected,
    TargetUnavailable,
)
from chamberlain.rotation.rotators.postgres import PostgresRotator, alternate_of

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


def intent(role: str, port: int, strategy: str) -> SecretIntent:
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
