"""The PostgreSQL rotator's trust boundaries without a server: the TLS parameters libpq gets (and the caBundle
file it reads, removed once connected) and the privilege check, pure and through a fake connection."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chamberlain.intent.model import PostgresTls, SecretIntent
from chamberlain.rotation.rotators import RotationContext
from chamberlain.rotation.rotators.postgres import (
    PostgresRotator,
    PrivilegedTarget,
    privilege_refusal,
    tls_parameters,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_tls_parameters() -> None:
    assert tls_parameters(PostgresTls(), None) == {"sslmode": "verify-full", "sslrootcert": "system"}
    assert tls_parameters(PostgresTls(mode="verify-full", ca_bundle=PEM), "/tmp/x.pem") == {
        "sslmode": "verify-full", "sslrootcert": "/tmp/x.pem"}
    assert tls_parameters(PostgresTls(mode="disable"), None) == {"sslmode": "disable"}


@pytest.mark.parametrize(("user", "flags", "expected"), [
    ("app", {"rolsuper": False, "rolcreaterole": False}, None),
    ("app", None, None),  # not created yet (the alternate user)
    ("app", {"rolsuper": True}, "privileged (pg_roles: rolsuper)"),
    ("app", {"rolcreaterole": True, "rolbypassrls": True}, "privileged (pg_roles: rolcreaterole, rolbypassrls)"),
    ("admin", {"rolsuper": False}, "the admin's own session user"),
], ids=["plain", "absent", "superuser", "createrole", "admin"])
def test_privilege_refusal(user: str, flags: Mapping[str, bool] | None, expected: str | None) -> None:
    got = privilege_refusal(user, "admin", flags)
    assert got == expected if expected is None else expected in str(got)


def _intent(tls: dict[str, str] | None = None) -> SecretIntent:
    return SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": {"name": "app-db"},
        "spec": {"owner": "shop", "purpose": "db", "classification": "runtime",
                 "source": {"generate": {"username": {"type": "fixed-name", "name": "app"},
                                         "password": {"type": "password"}}},
                 "target": {"postgres": {"host": "db.example", "role": "app", "adminIntent": "pg-admin",
                                         **({"tls": tls} if tls else {})}}},
    })


class FakeConn:
    """Answers the privilege queries; records every statement."""

    def __init__(self, superuser: bool) -> None:
        self.superuser = superuser
        self.statements: list[str] = []

    def __enter__(self) -> FakeConn:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def close(self) -> None:
        return None

    def execute(self, query: Any, params: Any = None) -> FakeConn:
        self.statements.append(str(query))
        self._last = str(query)
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        if "session_user" in self._last:
            return ("postgres",)
        if "rolsuper" in self._last:
            return (self.superuser, False, False, False)
        return None


def test_the_connection_verifies_tls_and_the_ca_file_is_removed_after_connecting() -> None:
    seen: dict[str, Any] = {}
    conn = FakeConn(superuser=True)

    def connect(**kw: Any) -> FakeConn:
        seen.update(kw)
        seen["ca_content"] = Path(kw["sslrootcert"]).read_text()
        seen["ca_mode"] = os.stat(kw["sslrootcert"]).st_mode & 0o777
        return conn

    rotator = PostgresRotator(connect=connect)
    ctx = RotationContext(_intent({"mode": "verify-full", "caBundle": PEM}), datetime(2030, 1, 1, tzinfo=UTC),
                          {"username": "app", "password": "old"}, admin={"username": "postgres", "password": "pw"})
    pending = rotator.create_pending(ctx)
    with pytest.raises(PrivilegedTarget):
        rotator.set_at_target(ctx, pending)
    assert seen["sslmode"] == "verify-full" and seen["ca_content"] == PEM and seen["ca_mode"] == 0o600
    assert not Path(seen["sslrootcert"]).exists()
    assert not any("ALTER ROLE" in s for s in conn.statements), "refused before any ALTER ROLE"
