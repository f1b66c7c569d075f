"""Rotators without servers: the registry, the pure choice of a rotator, and the value-only rotators.

The PostgreSQL rotator's pure parts (who is current next, key layout, error mapping, revoke guards) are here too;
its SQL runs against the real server in tests/lab/test_rotators_postgres.py.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from chamberlain.intent.model import RotationPolicySpec, SecretIntent
from chamberlain.rotation.rotators import (
    CredentialTestFailed,
    DuplicateRotator,
    PendingVersion,
    Registry,
    RotationContext,
    Rotator,
    RotatorConfigError,
    TargetRejected,
    TargetUnavailable,
    UnknownRotator,
    rotator_name_for,
)
from chamberlain.rotation.rotators import registry as registry_mod
from chamberlain.rotation.rotators.generated import GeneratedRotator, KeypairRotator, RandomRotator
from chamberlain.rotation.rotators.postgres import PostgresRotator, alternate_of, layout, map_error, next_user
from chamberlain.rotation.rotators.x509 import X509SelfSignedRotator, certificate_key

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def make_intent(
    generate: dict[str, Any] | None = None,
    *,
    annotations: dict[str, str] | None = None,
    postgres: dict[str, Any] | None = None,
) -> SecretIntent:
    spec: dict[str, Any] = {
        "owner": "shop",
        "purpose": "tests",
        "classification": "runtime",
        "source": {"generate": generate}
        if generate is not None
        else {"publication": {"namespace": "db", "secretName": "x"}},
    }
    if postgres is not None:
        spec["target"] = {"postgres": {"host": "127.0.0.1", "adminIntent": "pg-admin", **postgres}}
    return SecretIntent.model_validate(
        {
            "apiVersion": "chamberlain.dev/v1alpha1",
            "kind": "SecretIntent",
            "metadata": {"name": "app", "namespace": "shop", "annotations": annotations or {}},
            "spec": spec,
        }
    )


MIXED = {
    "username": {"type": "fixed-name", "name": "app"},
    "password": {"type": "password", "length": 24, "symbols": True},
    "token": {"type": "token", "bytes": 16, "encoding": "hex"},
    "blob": {"type": "bytes", "length": 8},
    "signing": {"type": "ed25519"},
    "ec": {"type": "ecdsa", "curve": "P-384"},
    "rsa": {"type": "rsa", "bits": 2048},
}


# --------------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FakeDist:
    name: str


@dataclass(frozen=True)
class FakeEP:
    name: str
    value: str
    dist: FakeDist | None


def own(name: str) -> FakeEP:
    return FakeEP(name, registry_mod.BUILTINS[name], FakeDist("chamberlain"))


class Plugin(RandomRotator):
    name = "vendor"


def test_registry_loads_the_builtins_from_fresh_metadata() -> None:
    reg = Registry.load([own(n) for n in registry_mod.BUILTINS])
    assert reg.names() == sorted(registry_mod.BUILTINS)
    assert all(isinstance(reg.get(n), Rotator) for n in reg.names())


@pytest.mark.parametrize(
    "declared",
    [pytest.param([], id="no-metadata-at-all"), pytest.param([own("random")], id="metadata-older-than-x509")],
)
def test_registry_falls_back_to_builtins_when_metadata_is_stale(declared: list[FakeEP]) -> None:
    assert Registry.load(declared).names() == sorted(registry_mod.BUILTINS)


def test_registry_with_the_installed_metadata_has_every_builtin() -> None:
    assert set(registry_mod.BUILTINS) <= set(Registry.load().names())


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(FakeEP("random", f"{__name__}:Plugin", FakeDist("evil-plugin")), id="plugin-shadows-builtin"),
        pytest.param(FakeEP("x509", f"{__name__}:Plugin", FakeDist("pki-plugin")), id="plugin-shadows-fallback"),
        pytest.param(own("keypair"), id="same-distribution-twice"),
    ],
)
def test_registry_fails_loudly_on_duplicate_names(extra: FakeEP) -> None:
    with pytest.raises(DuplicateRotator, match=repr(extra.name)) as caught:
        Registry.load([own("random"), own("keypair"), extra])
    assert extra.value in str(caught.value)


def test_registry_loads_a_plugin_and_checks_its_name() -> None:
    reg = Registry.load([FakeEP("vendor", f"{__name__}:Plugin", FakeDist("vendor-rotators"))])
    assert "vendor" in reg.names()
    with pytest.raises(RotatorConfigError, match="not a Rotator named 'other'"):
        Registry.load([FakeEP("other", f"{__name__}:Plugin", FakeDist("vendor-rotators"))])


def test_builtins_are_imported_on_first_use_and_built_once() -> None:
    # A fresh interpreter: other tests import the certificate rotators (and cryptography) in this one.
    code = (
        "import sys\n"
        "from chamberlain.rotation.rotators.registry import Registry\n"
        "reg = Registry.load()\n"
        "assert 'x509' in reg.names() and 'cryptography' not in sys.modules, 'loaded early'\n"
        "assert reg.get('random') is reg.get('random')\n"
        "assert 'cryptography' not in sys.modules, 'random imported it'\n"
        "assert reg.get('x509').name == 'x509' and 'cryptography' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_builtin_that_cannot_be_imported_is_refused_when_used_not_a_crash() -> None:
    broken = registry_mod.Entry("random", "chamberlain.no_such_module_here:RandomRotator", registry_mod.DISTRIBUTION)
    reg = Registry({}, {"random": broken})
    assert reg.names() == ["random"]
    with pytest.raises(RotatorConfigError, match=r"rotator 'random' .* cannot be loaded \(ModuleNotFoundError\)"):
        reg.get("random")


def test_a_plugin_is_checked_when_the_registry_loads_not_at_first_use() -> None:
    with pytest.raises(RotatorConfigError, match="not a Rotator named 'other'"):
        Registry.load([own("random"), FakeEP("other", f"{__name__}:Plugin", FakeDist("vendor-rotators"))])


def test_unknown_rotator_names_the_known_ones() -> None:
    with pytest.raises(UnknownRotator, match="known: generated, keypair"):
        Registry.load([]).get("nope")


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        pytest.param(make_intent({"p": {"type": "password"}}), "random", id="passwords-random"),
        pytest.param(
            make_intent({"k": {"type": "rsa"}, "u": {"type": "fixed-name", "name": "x"}}), "keypair", id="keys-keypair"
        ),
        pytest.param(make_intent(MIXED), "generated", id="mixed-generated"),
        pytest.param(
            make_intent({"tls.key": {"type": "ecdsa"}}, annotations={"chamberlain.dev/rotator": "x509"}),
            "x509",
            id="annotation-x509",
        ),
        pytest.param(
            make_intent({"password": {"type": "password"}}, postgres={"role": "app"}), "postgres", id="target-postgres"
        ),
    ],
)
def test_rotator_name_for(intent: SecretIntent, expected: str) -> None:
    assert rotator_name_for(intent) == expected
    assert Registry.load([]).for_intent(intent).name == expected


# --------------------------------------------------------------------------------------------------- random / keypair


def ctx_of(intent: SecretIntent, current: dict[str, str] | None = None, **kw: Any) -> RotationContext:
    return RotationContext(intent=intent, now=NOW, current=current or {}, **kw)


def public_of(private_pem: str) -> bytes:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(
    ("rotator", "changed"),
    [
        pytest.param(RandomRotator(), {"password", "token", "blob"}, id="random"),
        pytest.param(KeypairRotator(), {"signing", "signing.pub", "ec", "ec.pub", "rsa", "rsa.pub"}, id="keypair"),
        pytest.param(
            GeneratedRotator(),
            {"password", "token", "blob", "signing", "signing.pub", "ec", "ec.pub", "rsa", "rsa.pub"},
            id="generated",
        ),
    ],
)
def test_value_rotators_redraw_their_keys_and_keep_the_rest(rotator: GeneratedRotator, changed: set[str]) -> None:
    intent = make_intent(MIXED)
    first = GeneratedRotator().create_pending(ctx_of(intent, {"username": "app"}))
    pending = rotator.create_pending(ctx_of(intent, dict(first.data)))
    assert pending.rotated == changed
    assert set(pending.data) == set(first.data)
    assert {k for k in first.data if first.data[k] != pending.data[k]} == changed
    assert pending.data["username"] == "app"
    if "password" in changed:
        assert len(pending.data["password"]) == 24
        assert len(pending.data["token"]) == 32 and int(pending.data["token"], 16) >= 0
    for key in ("signing", "ec", "rsa"):
        if key in changed:
            assert public_of(pending.data[key]) == pending.data[f"{key}.pub"].encode()
    rotator.set_at_target(ctx_of(intent), pending)
    rotator.test(ctx_of(intent), pending)
    rotator.revoke_old(ctx_of(intent, dict(pending.data)), dict(first.data))


def test_fixed_names_come_from_the_intent_when_current_is_empty() -> None:
    pending = RandomRotator().create_pending(ctx_of(make_intent(MIXED)))
    assert pending.data["username"] == "app" and "username" not in pending.rotated


@pytest.mark.parametrize(
    ("rotator", "intent", "match"),
    [
        pytest.param(
            RandomRotator(), make_intent({"k": {"type": "rsa"}}), "no key to rotate", id="random-without-randoms"
        ),
        pytest.param(
            KeypairRotator(), make_intent({"p": {"type": "password"}}), "no key to rotate", id="keypair-without-keys"
        ),
        pytest.param(RandomRotator(), make_intent(None), "not generate", id="publication-source"),
        pytest.param(
            X509SelfSignedRotator(), make_intent({"p": {"type": "password"}}), "keypair", id="x509-without-key"
        ),
    ],
)
def test_rotators_refuse_intents_they_cannot_rotate(rotator: Any, intent: SecretIntent, match: str) -> None:
    with pytest.raises(RotatorConfigError, match=match):
        rotator.create_pending(ctx_of(intent))


def test_no_value_in_repr_of_context_or_pending() -> None:
    intent = make_intent({"password": {"type": "password"}})
    pending = RandomRotator().create_pending(ctx_of(intent))
    ctx = ctx_of(intent, dict(pending.data), admin={"password": "admin-secret-value"})
    assert pending.data["password"] not in repr(pending) + repr(ctx)
    assert "admin-secret-value" not in repr(ctx)


# --------------------------------------------------------------------------------------------------- x509


@pytest.mark.parametrize(
    ("key", "generator", "cert_key"),
    [
        pytest.param("tls.key", {"type": "ecdsa"}, "tls.crt", id="ecdsa-tls-layout"),
        pytest.param("server", {"type": "rsa", "bits": 2048}, "server.crt", id="rsa-plain-name"),
        pytest.param("edge.key", {"type": "ed25519"}, "edge.crt", id="ed25519"),
    ],
)
def test_x509_self_signed_certificate_is_valid_and_matches_the_key(
    key: str, generator: dict[str, Any], cert_key: str
) -> None:
    assert certificate_key(key) == cert_key
    intent = make_intent(
        {key: generator},
        annotations={"chamberlain.dev/rotator": "x509", "chamberlain.dev/x509-dns-names": "app.shop.svc, app"},
    )
    policy = RotationPolicySpec(type="time-based", ttl=timedelta(days=30))
    ctx = ctx_of(intent, policy=policy)
    rotator = X509SelfSignedRotator()
    pending = rotator.create_pending(ctx)
    assert pending.rotated == {key, f"{key}.pub", cert_key}
    cert = x509.load_pem_x509_certificate(pending.data[cert_key].encode())
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=app"
    assert cert.not_valid_before_utc <= NOW <= cert.not_valid_after_utc
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["app.shop.svc", "app"]
    assert cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == public_of(pending.data[key])
    rotator.test(ctx, pending)
    again = rotator.create_pending(ctx_of(intent, dict(pending.data), policy=policy))
    assert again.data[cert_key] != pending.data[cert_key] and again.data[key] != pending.data[key]


def test_x509_test_step_rejects_a_certificate_not_valid_now_or_for_another_key() -> None:
    intent = make_intent({"tls.key": {"type": "ecdsa"}}, annotations={"chamberlain.dev/rotator": "x509"})
    rotator = X509SelfSignedRotator()
    pending = rotator.create_pending(ctx_of(intent))
    with pytest.raises(RotatorConfigError, match="not valid now"):
        rotator.test(RotationContext(intent, NOW + timedelta(days=91)), pending)
    other = rotator.create_pending(ctx_of(intent))
    swapped = PendingVersion({**pending.data, "tls.crt": other.data["tls.crt"]}, pending.rotated)
    with pytest.raises(RotatorConfigError, match="does not match"):
        rotator.test(ctx_of(intent), swapped)


# --------------------------------------------------------------------------------------------------- postgres (pure)


def pg_intent(strategy: str = "single-user", generate: dict[str, Any] | None = None, role: str = "app") -> SecretIntent:
    return make_intent(
        generate or {"username": {"type": "fixed-name", "name": role}, "password": {"type": "password"}},
        postgres={"role": role, "strategy": strategy},
    )


def refuse_to_connect(**_: Any) -> Any:
    raise AssertionError("this step must not connect")


@pytest.mark.parametrize(
    ("strategy", "current", "expected"),
    [
        pytest.param("single-user", "app", "app", id="single-stays"),
        pytest.param("alternating", "app", "app_alt", id="alt-from-base"),
        pytest.param("alternating", "app_alt", "app", id="alt-back-to-base"),
        pytest.param("alternating", None, "app_alt", id="alt-first-time"),
    ],
)
def test_next_user(strategy: str, current: str | None, expected: str) -> None:
    target = pg_intent(strategy).spec.target
    assert target is not None
    assert next_user(target.postgres, current) == expected


@pytest.mark.parametrize(
    ("strategy", "current_user", "user", "rotated"),
    [
        pytest.param("single-user", "app", "app", {"password"}, id="single-user"),
        pytest.param("alternating", "app", "app_alt", {"username", "password"}, id="alternating"),
    ],
)
def test_postgres_create_pending(strategy: str, current_user: str, user: str, rotated: set[str]) -> None:
    ctx = ctx_of(pg_intent(strategy), {"username": current_user, "password": "x" * 32})
    pending = PostgresRotator(connect=refuse_to_connect).create_pending(ctx)
    assert pending.data["username"] == user and pending.rotated == rotated
    assert pending.data["password"] != "x" * 32 and len(pending.data["password"]) == 32
    assert pending.notes == {"postgres-user": user, "postgres-strategy": strategy}


@pytest.mark.parametrize(
    ("generate", "match"),
    [
        pytest.param({"password": {"type": "password"}}, "fixed-name key", id="no-user-key"),
        pytest.param(
            {"username": {"type": "fixed-name", "name": "app"}, "p1": {"type": "password"}, "p2": {"type": "password"}},
            "one password",
            id="two-passwords",
        ),
    ],
)
def test_postgres_layout_errors(generate: dict[str, Any], match: str) -> None:
    with pytest.raises(RotatorConfigError, match=match):
        layout(ctx_of(pg_intent(generate=generate)))


def test_postgres_alternate_name_must_fit_63_characters() -> None:
    with pytest.raises(RotatorConfigError, match="too long"):
        PostgresRotator().create_pending(ctx_of(pg_intent("alternating", role="r" * 62)))
    assert alternate_of("app") == "app_alt"


@pytest.mark.parametrize(
    ("strategy", "previous_user", "current_user"),
    [
        pytest.param("single-user", "app", "app", id="single-user-has-nothing-to-revoke"),
        pytest.param("alternating", "app_alt", "app_alt", id="never-disable-the-current-user"),
    ],
)
def test_postgres_revoke_old_noops_without_connecting(strategy: str, previous_user: str, current_user: str) -> None:
    ctx = ctx_of(pg_intent(strategy), {"username": current_user, "password": "n"}, admin={"password": "a"})
    PostgresRotator(connect=refuse_to_connect).revoke_old(ctx, {"username": previous_user, "password": "o"})


def test_postgres_revoke_old_refuses_a_user_outside_the_pair() -> None:
    ctx = ctx_of(pg_intent("alternating"), {"username": "app_alt", "password": "n"}, admin={"password": "a"})
    with pytest.raises(RotatorConfigError, match="outside"):
        PostgresRotator(connect=refuse_to_connect).revoke_old(ctx, {"username": "postgres", "password": "o"})


def test_postgres_needs_the_admin_credential() -> None:
    ctx = ctx_of(pg_intent(), {"username": "app", "password": "o"})
    rotator = PostgresRotator(connect=refuse_to_connect)
    with pytest.raises(RotatorConfigError, match="admin credential"):
        rotator.set_at_target(ctx, rotator.create_pending(ctx))


SECRETISH = "statement: ALTER ROLE x PASSWORD 'SCRAM-SHA-256$4096:s3cr3t'"


def pg_error(sqlstate: str | None, message: str = SECRETISH) -> psycopg.Error:
    """A real psycopg error class for ``sqlstate`` whose message quotes a secret-looking statement."""
    return psycopg.OperationalError(message) if sqlstate is None else psycopg.errors.lookup(sqlstate)(message)


@pytest.mark.parametrize(
    ("exc", "login", "expected", "retryable"),
    [
        pytest.param(pg_error(None, "connection refused"), None, TargetUnavailable, True, id="refused"),
        pytest.param(pg_error("57P01"), None, TargetUnavailable, True, id="admin-shutdown"),
        pytest.param(pg_error("40P01"), None, TargetUnavailable, True, id="deadlock"),
        pytest.param(pg_error("55P03"), None, TargetUnavailable, True, id="lock-timeout"),
        pytest.param(pg_error("42501"), None, TargetRejected, False, id="insufficient-privilege"),
        pytest.param(pg_error("42704"), None, TargetRejected, False, id="undefined-role"),
        pytest.param(pg_error("28P01"), "pending", CredentialTestFailed, True, id="pending-rejected"),
        pytest.param(
            pg_error(None, 'password authentication failed for user "app"'),
            "admin",
            TargetRejected,
            False,
            id="admin-rejected",
        ),
    ],
)
def test_map_error(exc: psycopg.Error, login: Any, expected: type[Exception], retryable: bool) -> None:
    err = map_error(exc, "app: step", login=login)
    assert type(err) is expected
    assert err.retryable is retryable
    assert "s3cr3t" not in str(err) and "SCRAM" not in str(err)
