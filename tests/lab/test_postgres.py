"""Proof 6: a PostgreSQL role's password is changed and only the new one authenticates."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest
from psycopg import sql

pytestmark = pytest.mark.lab


def test_alter_role_password_rotates_credentials(postgres_dsn: str, lab: object) -> None:
    port = postgres_dsn.split("port=")[1].split()[0]
    old, new = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    role = "rotation_proof"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(old)))

    def connect(password: str) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=port, dbname="postgres", user=role, password=password, connect_timeout=5
        )

    with connect(old) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(new)))

    with connect(new) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(old)
