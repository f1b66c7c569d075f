"""The ``postgres`` rotator: a PostgreSQL role's password, rotated with one of two strategies.

The intent carries ``target.postgres`` ({host, port, role, database, adminIntent, strategy}); its generate block
holds the user name (a ``fixed-name`` key whose name is the role, or the key ``username``/``user``) and the password
(the one ``password`` key, or the key ``password``). The caller reads the ``adminIntent`` secret from Vault and
hands its values in as ``ctx.admin`` (``username``/``user``, default ``postgres``; ``password``) — the rotator
never reads Vault.

``single-user``: ``set_at_target`` runs ``ALTER ROLE <role> PASSWORD …``. The old password stops working at once;
``revoke_old`` has nothing left to do. Consumers that have not yet received the new version fail to connect
until ESO syncs, which is why ``alternating`` exists.

``alternating`` (two users, zero failed logins): the users are ``<role>`` and ``<role>_alt``. Each rotation
switches the *current* user name to the other user and sets a fresh password on it, so the credential consumers
still hold (old user, old password) keeps working for ``maxOverlap``; ``revoke_old`` then disables the old user
(``NOLOGIN PASSWORD NULL``). ``<role>_alt`` is created on first use, ``NOLOGIN`` until its password is set; it gets
``<role>``'s privileges by membership (``GRANT <role> TO <role>_alt``, inheriting) and its sessions run as
``<role>`` (``ALTER ROLE <role>_alt SET role = <role>``) so objects it creates are owned by ``<role>`` and the two
users stay interchangeable. Existing sessions of a revoked user are left alone: closing them is the application's
concern, and a pool reconnects with the credential it was given.

Trust boundaries (issue 11):

* TLS: every connection (the admin's and the test login) uses ``sslmode=verify-full``: the server certificate
  must chain to ``target.postgres.tls.caBundle`` (written to a private temporary file for libpq, removed once
  connected), or to the system trust store when no bundle is given, and name the host. ``tls.mode: disable``
  (the lab, which says so explicitly; validate reports it) connects in plain text. An admin password is never
  sent to a server whose identity was not verified.
* Privileged targets: before any ``ALTER ROLE`` (set, revoke, the alternate's grants), the admin session reads
  ``pg_roles`` for every user it is about to change and refuses (:class:`PrivilegedTarget`, permanent: the run
  fails and its ledger entry records why) a superuser, a role with ``CREATEROLE``, ``REPLICATION`` or
  ``BYPASSRLS`` (each can take over the database or its other roles), and the admin's own session user. An
  intent naming such a role cannot use the admin credential to take it over. Validate rejects it statically where
  it can; this is the runtime check against the database as it is.

Secrets in SQL: PostgreSQL takes no bind parameters in utility statements, so the password would be a literal in
``ALTER ROLE``, where ``log_statement`` or an error message could echo it. We never send it: libpq computes the
SCRAM-SHA-256 verifier client side (``PQencryptPasswordConn``, as ``psql``'s ``\\password`` does) and only the
verifier is sent, as a ``sql.Literal``. Statements are never logged by this module, and psycopg errors are mapped
once, in :func:`map_error`, to typed retryable/permanent errors carrying the SQLSTATE and never the server text.
Boundary: the only module of chamberlain that imports psycopg.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from chamberlain.intent.model import FixedNameGenerator, PasswordGenerator, PostgresTarget, PostgresTls
from chamberlain.rotation.rotators.base import (
    CredentialTestFailed,
    PendingVersion,
    RotationContext,
    RotatorConfigError,
    RotatorError,
    TargetRejected,
    TargetUnavailable,
)
from chamberlain.rotation.rotators.generated import fixed_names, generators_of
from chamberlain.values.generate import password

if TYPE_CHECKING:
    # psycopg (and libpq behind it) is imported by the steps that talk to a server, not when the registry loads
    # this plug-in: a controller that never rotates a PostgreSQL secret does not pay for it (memory, start-up).
    import psycopg

ALT_SUFFIX = "_alt"
MAX_IDENTIFIER = 63  # PostgreSQL NAMEDATALEN - 1
DEFAULT_ADMIN_USER = "postgres"
SCRAM = b"scram-sha-256"
# SQLSTATE classes worth retrying: connection exceptions, transaction rollback (serialization, deadlock),
# insufficient resources, operator intervention (shutdown, cancel) and lock_not_available.
RETRYABLE_SQLSTATE_CLASSES = ("08", "40", "53", "57")
RETRYABLE_SQLSTATES = ("55P03",)
AUTH_FAILED_SQLSTATES = ("28P01", "28000")

Connect = Callable[..., "psycopg.Connection[Any]"]


# --------------------------------------------------------------------------------------------------- pure parts


def alternate_of(role: str) -> str:
    """The second user of the alternating strategy."""
    return f"{role}{ALT_SUFFIX}"


def next_user(target: PostgresTarget, current_user: str | None) -> str:
    """The user a rotation makes current: the same role (single-user) or the other of the two (alternating)."""
    if target.strategy == "single-user":
        return target.role
    return target.role if current_user == alternate_of(target.role) else alternate_of(target.role)


@dataclass(frozen=True)
class Layout:
    """Which keys of the secret hold the user name and the password."""

    user_key: str
    password_key: str
    password_spec: PasswordGenerator


def layout(ctx: RotationContext) -> Layout:
    target = target_of(ctx)
    generators = generators_of(ctx)
    names = {k: g for k, g in generators.items() if isinstance(g, FixedNameGenerator)}
    passwords = {k: g for k, g in generators.items() if isinstance(g, PasswordGenerator)}
    user_keys = [k for k, g in names.items() if g.name == target.role] or [
        k for k in ("username", "user") if k in names
    ]
    if len(user_keys) != 1:
        raise RotatorConfigError(
            f"{ctx.name}: need exactly one fixed-name key naming role {target.role!r} (or 'username'/'user')"
        )
    password_keys = list(passwords) if len(passwords) == 1 else [k for k in ("password",) if k in passwords]
    if len(password_keys) != 1:
        raise RotatorConfigError(f"{ctx.name}: need exactly one password key (or one named 'password')")
    return Layout(user_keys[0], password_keys[0], passwords[password_keys[0]])


def target_of(ctx: RotationContext) -> PostgresTarget:
    target = ctx.intent.spec.target
    if target is None:
        raise RotatorConfigError(f"{ctx.name}: the postgres rotator needs target.postgres")
    if target.postgres.strategy == "alternating" and len(alternate_of(target.postgres.role)) > MAX_IDENTIFIER:
        raise RotatorConfigError(f"{ctx.name}: role name too long to add {ALT_SUFFIX!r} for the alternating user")
    return target.postgres


@dataclass(frozen=True)
class Credential:
    user: str
    password: str = field(repr=False)


def admin_credential(ctx: RotationContext) -> Credential:
    admin = ctx.admin or {}
    if not admin.get("password"):
        raise RotatorConfigError(f"{ctx.name}: the admin credential (adminIntent) was not handed in or has no password")
    return Credential(admin.get("username") or admin.get("user") or DEFAULT_ADMIN_USER, admin["password"])


def _auth_failed(exc: psycopg.Error) -> bool:
    # A failed login surfaces as OperationalError on connect, often without a SQLSTATE; libpq's text is the only
    # signal then. It is inspected, never copied into our error.
    return exc.sqlstate in AUTH_FAILED_SQLSTATES or "authentication failed" in str(exc)


def map_error(exc: psycopg.Error, where: str, *, login: Literal["admin", "pending"] | None = None) -> RotatorError:
    """The one mapping of psycopg errors to rotator errors. Messages carry class and SQLSTATE, no server text."""
    detail = f"{where} failed ({type(exc).__name__}, sqlstate {exc.sqlstate or 'none'})"
    if login is not None and _auth_failed(exc):
        if login == "pending":
            return CredentialTestFailed(f"{detail}: the pending credential was rejected")
        return TargetRejected(f"{detail}: the admin credential was rejected")
    state = exc.sqlstate or ""
    if state.startswith(RETRYABLE_SQLSTATE_CLASSES) or state in RETRYABLE_SQLSTATES:
        return TargetUnavailable(detail)
    import psycopg  # already imported: ``exc`` is one of its errors

    if isinstance(exc, psycopg.OperationalError) and not state:
        return TargetUnavailable(detail)  # refused, timed out, reset: the server or the network
    return TargetRejected(detail)


class PrivilegedTarget(TargetRejected):
    """The role to change is privileged (superuser, CREATEROLE, REPLICATION, BYPASSRLS) or is the admin itself."""


PRIVILEGE_COLUMNS = ("rolsuper", "rolcreaterole", "rolreplication", "rolbypassrls")


def privilege_refusal(user: str, admin_user: str, flags: Mapping[str, bool] | None) -> str | None:
    """Why changing ``user`` is refused (None: allowed). Pure: ``flags`` are its ``pg_roles`` columns (None: the
    role does not exist yet), ``admin_user`` the admin session's user."""
    if user == admin_user:
        return f"role {user} is the admin's own session user"
    held = [c for c in PRIVILEGE_COLUMNS if flags and flags.get(c)]
    if held:
        return f"role {user} is privileged (pg_roles: {', '.join(held)})"
    return None


def tls_parameters(tls: PostgresTls, ca_file: str | None) -> dict[str, str]:
    """libpq's TLS settings for ``tls`` (``ca_file``: the written caBundle). Pure."""
    if tls.mode == "disable":
        return {"sslmode": "disable"}
    return {"sslmode": "verify-full", "sslrootcert": ca_file or "system"}


@contextlib.contextmanager
def _ca_file(tls: PostgresTls) -> Iterator[str | None]:
    """The caBundle as a private file for libpq (it takes a path, not data), removed when connected."""
    if tls.mode == "disable" or not tls.ca_bundle:
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="chamberlain-pg-ca-", suffix=".pem")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(tls.ca_bundle)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


# --------------------------------------------------------------------------------------------------- the rotator


class PostgresRotator:
    name = "postgres"

    def __init__(self, connect: Connect | None = None, timeout_seconds: int = 5) -> None:
        self._connect = connect  # None: psycopg.connect, imported on the first connection
        self._timeout = timeout_seconds

    # ------------------------------------------------------------------ steps

    def create_pending(self, ctx: RotationContext) -> PendingVersion:
        target, keys = target_of(ctx), layout(ctx)
        current_user = ctx.current.get(keys.user_key, target.role)
        user = next_user(target, current_user)
        data = {
            **fixed_names(ctx, generators_of(ctx)),
            **ctx.current,
            keys.user_key: user,
            keys.password_key: password(keys.password_spec),
        }
        rotated = {keys.password_key} | ({keys.user_key} if user != current_user else set())
        return PendingVersion(
            data=data, rotated=frozenset(rotated), notes={"postgres-user": user, "postgres-strategy": target.strategy}
        )

    def set_at_target(self, ctx: RotationContext, pending: PendingVersion) -> None:
        target, keys = target_of(ctx), layout(ctx)
        user = self._pending_user(ctx, target, keys, pending)
        where = f"{ctx.name}: set_at_target at postgres {target.host}:{target.port}"
        import psycopg
        from psycopg import sql

        with self._admin(ctx, target, where) as conn:
            try:
                self._refuse_privileged(conn, where, {target.role, user})
                if target.strategy == "alternating":
                    self._ensure_user(conn, target.role, user)
                verifier = conn.pgconn.encrypt_password(
                    pending.data[keys.password_key].encode(), user.encode(), SCRAM
                ).decode()
                login = sql.SQL("LOGIN ") if target.strategy == "alternating" else sql.SQL("")
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH {}PASSWORD {}").format(
                        sql.Identifier(user), login, sql.Literal(verifier)
                    )
                )
            except psycopg.Error as exc:
                _raise(map_error(exc, where))

    def test(self, ctx: RotationContext, pending: PendingVersion) -> None:
        target, keys = target_of(ctx), layout(ctx)
        user = self._pending_user(ctx, target, keys, pending)
        where = f"{ctx.name}: test at postgres {target.host}:{target.port}"
        import psycopg

        try:
            with self._open(target, Credential(user, pending.data[keys.password_key])) as conn:
                row = conn.execute("SELECT session_user").fetchone()
        except psycopg.Error as exc:
            _raise(map_error(exc, where, login="pending"))
        if row is None or row[0] != user:
            raise CredentialTestFailed(f"{where}: logged in as an unexpected user")

    def revoke_old(self, ctx: RotationContext, previous: Mapping[str, str]) -> None:
        target, keys = target_of(ctx), layout(ctx)
        old_user = previous.get(keys.user_key, target.role)
        current_user = ctx.current.get(keys.user_key, target.role)
        if target.strategy == "single-user" or old_user == current_user:
            return  # ALTER ROLE already replaced the old password; never disable the user that is current
        if old_user not in (target.role, alternate_of(target.role)):
            # The stored values name a user this rotator does not manage: refuse rather than disable a stranger.
            raise RotatorConfigError(f"{ctx.name}: previous version names a user outside this rotation's pair")
        where = f"{ctx.name}: revoke_old at postgres {target.host}:{target.port}"
        import psycopg
        from psycopg import sql

        with self._admin(ctx, target, where) as conn:
            try:
                self._refuse_privileged(conn, where, {old_user})
                if self._role_exists(conn, old_user):
                    conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN PASSWORD NULL").format(sql.Identifier(old_user)))
            except psycopg.Error as exc:
                _raise(map_error(exc, where))

    # ------------------------------------------------------------------ helpers

    def _pending_user(self, ctx: RotationContext, target: PostgresTarget, keys: Layout, pending: PendingVersion) -> str:
        user = pending.data.get(keys.user_key, "")
        if user not in (target.role, alternate_of(target.role)) or keys.password_key not in pending.data:
            raise RotatorConfigError(f"{ctx.name}: pending version does not name this rotation's user and password")
        return user

    def _open(self, target: PostgresTarget, cred: Credential) -> psycopg.Connection[Any]:
        connect = self._connect
        if connect is None:
            import psycopg

            connect = psycopg.connect
        with _ca_file(target.tls) as ca_file:
            options: dict[str, Any] = {
                "host": target.host, "port": target.port, "dbname": target.database, "user": cred.user,
                "password": cred.password, "connect_timeout": self._timeout, "autocommit": True,
                "application_name": "chamberlain-rotator", **tls_parameters(target.tls, ca_file),
            }
            return connect(**options)

    def _admin(self, ctx: RotationContext, target: PostgresTarget, where: str) -> psycopg.Connection[Any]:
        cred = admin_credential(ctx)
        import psycopg
        from psycopg import sql

        try:
            conn = self._open(target, cred)
        except psycopg.Error as exc:
            _raise(map_error(exc, where, login="admin"))
        try:
            # Bounded waits on pg_authid locks, so a stuck session turns into a retryable error, not a hang.
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{self._timeout}s")))
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{self._timeout * 2}s")))
        except psycopg.Error as exc:
            conn.close()
            _raise(map_error(exc, where))
        return conn

    @staticmethod
    def _refuse_privileged(conn: psycopg.Connection[Any], where: str, users: set[str]) -> None:
        """Raise :class:`PrivilegedTarget` when any of ``users`` is privileged or is the admin session's user."""
        row = conn.execute("SELECT session_user").fetchone()
        admin_user = str(row[0]) if row else ""
        for user in sorted(users):
            flags = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s",
                (user,),
            ).fetchone()
            refused = privilege_refusal(user, admin_user,
                                        dict(zip(PRIVILEGE_COLUMNS, flags, strict=True)) if flags else None)
            if refused is not None:
                raise PrivilegedTarget(f"{where}: refused, {refused}; chamberlain never changes a privileged role "
                                       "or the admin's own")

    @staticmethod
    def _role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None

    def _ensure_user(self, conn: psycopg.Connection[Any], role: str, user: str) -> None:
        """Make sure ``user`` exists and holds ``role``'s privileges. Each statement is skipped when already true."""
        if user == role:
            return  # the base role is the application's; it must exist and already has its grants
        import psycopg
        from psycopg import sql

        if not self._role_exists(conn, user):
            # A concurrent repeat may create it first: that is the state we want.
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN INHERIT").format(sql.Identifier(user)))
        member = conn.execute(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
            " WHERE r.rolname = %s AND u.rolname = %s",
            (role, user),
        ).fetchone()
        if member is None:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(user)))
        conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(sql.Identifier(user), sql.Literal(role)))


def _raise(error: RotatorError) -> NoReturn:
    # ``from None``: the psycopg exception may quote the statement (and so the verifier); it must not ride along.
    raise error from None
