"""The ``x509-vault-pki`` rotator against a fake issuer (a local root and intermediate CA built with
``cryptography``), its Vault adapter against a stub hvac client, and the orchestrator policy it needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chamberlain.authority.errors import AuthorityError, AuthorityUnavailable, Forbidden, InvalidRequest
from chamberlain.authority.pki import PkiRefError, SignedCertificate, VaultCertificateIssuer, pki_ref
from chamberlain.authority.vault import VaultClient
from chamberlain.clock import FakeClock
from chamberlain.intent.loader import load_repository
from chamberlain.intent.model import RotationPolicySpec, SecretIntent
from chamberlain.render import vault_bundle
from chamberlain.render.topology import RenderError, build_topology
from chamberlain.rotation import workflow as wf
from chamberlain.rotation.rotators import Registry, registry
from chamberlain.rotation.rotators.base import (
    CertificateIssuer,
    CredentialTestFailed,
    PendingVersion,
    RotationContext,
    RotatorConfigError,
    TargetRejected,
    TargetUnavailable,
)
from chamberlain.rotation.rotators.x509 import (
    X509SelfSignedRotator,
    X509VaultPkiRotator,
    csr_for,
    vault_serial,
)
from tests.conftest import CORPUS
from tests.unit.test_rotation_workflow import MOUNT, SECRET, make_world

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
PKI = {"chamberlain.dev/rotator": "x509-vault-pki", "chamberlain.dev/x509-pki-role": "web"}


def make_intent(annotations: dict[str, str], generate: dict[str, Any] | None = None,
                name: str = "app") -> SecretIntent:
    return SecretIntent.model_validate({
        "apiVersion": "chamberlain.dev/v1alpha1",
        "kind": "SecretIntent",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
        "spec": {
            "owner": "shop",
            "purpose": "tests",
            "classification": "runtime",
            "source": {"generate": generate if generate is not None else {"tls.key": {"type": "ecdsa"}}},
        },
    })


# --------------------------------------------------------------------------------------------------- fake CA


def _ca(name: str, signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
        now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = signer if signer is not None else (None, key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class FakeIssuer:
    """A Vault PKI mount in memory: a root, an intermediate that signs, one role, a revocation list."""

    now: datetime = NOW
    mount: str = "pki"
    role: str = "web"
    fail: AuthorityError | None = None
    signed: list[dict[str, Any]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = _ca("test root", None, self.now)
        self.intermediate = _ca("test intermediate", self.root, self.now)

    def sign(self, mount: str, role: str, csr_pem: str, common_name: str, alt_names: Sequence[str],
             ttl: str | None) -> SignedCertificate:
        if self.fail is not None:
            raise self.fail
        if (mount, role) != (self.mount, self.role):
            raise Forbidden(f"sign a certificate at {mount}/sign/{role}: permission denied (403)")
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert csr.is_signature_valid
        self.signed.append({"csr": csr_pem, "cn": common_name, "alt_names": list(alt_names), "ttl": ttl})
        lifetime = timedelta(seconds=int(ttl[:-1])) if ttl else timedelta(days=30)
        ca_cert, ca_key = self.intermediate
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(seconds=30))
            .not_valid_after(self.now + lifetime)
        )
        if alt_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in alt_names]), critical=False)
        leaf = builder.sign(ca_key, hashes.SHA256())
        return SignedCertificate(pem(leaf), pem(ca_cert), (pem(ca_cert), pem(self.root[0])), vault_serial(leaf))

    def revoke(self, mount: str, serial: str) -> None:
        if self.fail is not None:
            raise self.fail
        assert mount == self.mount
        self.revoked.append(serial)


def ctx_of(intent: SecretIntent, issuer: CertificateIssuer | None, current: dict[str, str] | None = None,
           now: datetime = NOW, policy: RotationPolicySpec | None = None) -> RotationContext:
    return RotationContext(intent, now, current=current or {}, policy=policy, pki=issuer)


def leaf_of(pending: PendingVersion, key: str = "tls.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificates(pending.data[key].encode())[0]


def test_the_fake_issuer_satisfies_the_protocol() -> None:
    issuer: CertificateIssuer = FakeIssuer()
    assert issuer is not None


# --------------------------------------------------------------------------------------------------- life cycle


def test_create_test_and_revoke_through_the_issuer() -> None:
    issuer = FakeIssuer()
    intent = make_intent({**PKI, "chamberlain.dev/x509-dns-names": "app.shop.svc, app"})
    rotator = X509VaultPkiRotator()
    first = rotator.create_pending(ctx_of(intent, issuer))

    assert set(first.data) == {"tls.key", "tls.key.pub", "tls.crt", "ca.crt"}
    assert first.rotated == {"tls.key", "tls.key.pub", "tls.crt", "ca.crt"}
    # Only a CSR went to the issuer, never the key.
    call = issuer.signed[0]
    assert "PRIVATE KEY" not in repr(issuer.signed) and first.data["tls.key"] not in repr(issuer.signed)
    assert call["cn"] == "app.shop.svc" and call["alt_names"] == ["app.shop.svc", "app"] and call["ttl"] is None
    # tls.crt: the leaf and the intermediate (what a server presents); ca.crt: intermediate then root.
    served = x509.load_pem_x509_certificates(first.data["tls.crt"].encode())
    cas = x509.load_pem_x509_certificates(first.data["ca.crt"].encode())
    assert [c.subject.rfc4514_string() for c in served] == ["CN=app.shop.svc", "CN=test intermediate"]
    assert [c.subject.rfc4514_string() for c in cas] == ["CN=test intermediate", "CN=test root"]
    san = served[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["app.shop.svc", "app"]
    assert first.notes == {"pki": "pki/sign/web", "serial.tls.crt": vault_serial(served[0])}

    rotator.test(ctx_of(intent, issuer), first)

    # The next rotation: a new key and certificate; after promotion, revoke_old revokes the first serial only.
    second = rotator.create_pending(ctx_of(intent, issuer, dict(first.data)))
    assert second.data["tls.key"] != first.data["tls.key"]
    assert vault_serial(leaf_of(second)) != vault_serial(leaf_of(first))
    rotator.test(ctx_of(intent, issuer, dict(first.data)), second)
    after = ctx_of(intent, issuer, dict(second.data))
    rotator.revoke_old(after, first.data)
    rotator.revoke_old(after, first.data)  # repeated after a crash: harmless, same serial
    assert issuer.revoked == [vault_serial(leaf_of(first))] * 2
    # Never the current certificate, never a self-issued one, nothing without a certificate.
    rotator.revoke_old(after, second.data)
    self_signed = X509SelfSignedRotator().create_pending(ctx_of(make_intent({"chamberlain.dev/rotator": "x509"}),
                                                                None))
    rotator.revoke_old(after, self_signed.data)
    rotator.revoke_old(after, {"tls.key": "x"})
    assert len(issuer.revoked) == 2


def test_ttl_from_the_annotation_or_the_policy() -> None:
    issuer = FakeIssuer()
    rotator = X509VaultPkiRotator()
    policy = RotationPolicySpec(type="time-based", ttl=timedelta(days=30))
    rotator.create_pending(ctx_of(make_intent({**PKI, "chamberlain.dev/x509-ttl": "7d"}), issuer, policy=policy))
    rotator.create_pending(ctx_of(make_intent(PKI), issuer, policy=policy))
    assert [c["ttl"] for c in issuer.signed] == ["604800s", "2592000s"]
    with pytest.raises(RotatorConfigError, match="x509-ttl"):
        rotator.create_pending(ctx_of(make_intent({**PKI, "chamberlain.dev/x509-ttl": "7"}), issuer))


def test_every_keypair_key_gets_its_certificate() -> None:
    issuer = FakeIssuer()
    intent = make_intent(PKI, {"server": {"type": "rsa", "bits": 2048}, "edge.key": {"type": "ed25519"},
                               "user": {"type": "fixed-name", "name": "svc"}})
    rotator = X509VaultPkiRotator()
    pending = rotator.create_pending(ctx_of(intent, issuer))
    assert {"server.crt", "edge.crt", "ca.crt", "user"} <= set(pending.data)
    assert pending.data["user"] == "svc" and "user" not in pending.rotated
    assert set(pending.notes) == {"pki", "serial.server.crt", "serial.edge.crt"}
    assert leaf_of(pending, "server.crt").subject.rfc4514_string() == "CN=app"  # no DNS names: the intent name
    rotator.test(ctx_of(intent, issuer), pending)


def test_two_workflow_runs_issue_promote_and_revoke_the_first_certificate() -> None:
    """Through the durable workflow: ``RotationDeps.pki`` reaches the rotator; the second run revokes the
    certificate the first run promoted (the version before the first had none: nothing to revoke)."""
    w = make_world()
    issuer = FakeIssuer(now=w.clock.now())
    deps = w.deps(intent=make_intent(PKI), rotator=X509VaultPkiRotator(), pki=issuer)
    first = wf.run_to_completion(w.start(), deps)
    assert first.stage == "revoked" and issuer.revoked == []
    promoted = w.kv.read(MOUNT, SECRET.path)
    assert promoted is not None and {"tls.key", "tls.crt", "ca.crt", "token"} <= set(promoted.data)
    assert first.notes["serial.tls.crt"] == vault_serial(x509.load_pem_x509_certificate(
        promoted.data["tls.crt"].encode()))
    second = wf.run_to_completion(w.start(run_id="run-2"), deps)
    assert second.stage == "revoked" and issuer.revoked == [first.notes["serial.tls.crt"]]
    entry = next(e for e in w.rotations() if e.run == "run-2")
    assert entry.details["note.serial.tls.crt"] == second.notes["serial.tls.crt"]
    assert "-----" not in entry.model_dump_json()


# --------------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("annotations", "match"),
    [
        pytest.param({"chamberlain.dev/rotator": "x509-vault-pki"}, "x509-pki-role is required", id="no-role"),
        pytest.param({**PKI, "chamberlain.dev/x509-pki-role": "a/b"}, "not a Vault PKI role", id="role-path"),
        pytest.param({**PKI, "chamberlain.dev/x509-pki-mount": 'pki"*'}, "not a Vault mount", id="mount-quote"),
    ],
)
def test_the_annotations_must_name_a_mount_and_a_role(annotations: dict[str, str], match: str) -> None:
    intent = make_intent(annotations, name="web-cert")
    with pytest.raises(RotatorConfigError, match=f"web-cert: .*{match}"):
        X509VaultPkiRotator().create_pending(ctx_of(intent, FakeIssuer()))


def test_the_default_mount_is_pki_and_a_nested_mount_is_allowed() -> None:
    assert pki_ref({"chamberlain.dev/x509-pki-role": "web"}).sign_path == "pki/sign/web"
    ref = pki_ref({"chamberlain.dev/x509-pki-role": "web", "chamberlain.dev/x509-pki-mount": "/pki/int/"})
    assert (ref.sign_path, ref.revoke_path) == ("pki/int/sign/web", "pki/int/revoke")


@pytest.mark.parametrize("mount", ["sys", "sys/leases", "auth/token", "identity", "cubbyhole", "SYS/leases"])
def test_a_system_path_is_never_a_pki_mount(mount: str) -> None:
    """The orchestrator's policy would grant update on <mount>/sign/<role> and <mount>/revoke: a team's annotation
    must not turn that into a grant on the server's own API."""
    with pytest.raises(PkiRefError, match="system path"):
        pki_ref({"chamberlain.dev/x509-pki-role": "web", "chamberlain.dev/x509-pki-mount": mount})


def test_without_an_issuer_or_a_keypair_it_refuses() -> None:
    rotator = X509VaultPkiRotator()
    with pytest.raises(RotatorConfigError, match="needs a certificate issuer"):
        rotator.create_pending(ctx_of(make_intent(PKI), None))
    with pytest.raises(RotatorConfigError, match="needs a keypair generator"):
        rotator.create_pending(ctx_of(make_intent(PKI, {"p": {"type": "password"}}), FakeIssuer()))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(Forbidden("sign a certificate at pki/sign/web: permission denied (403)"), TargetRejected,
                     id="forbidden"),
        pytest.param(AuthorityUnavailable("sign a certificate at pki/sign/web: server error (5xx)"),
                     TargetUnavailable, id="unavailable"),
    ],
)
def test_issuer_errors_become_rotator_errors(error: AuthorityError, expected: type[Exception]) -> None:
    issuer = FakeIssuer()
    intent = make_intent(PKI)
    pending = X509VaultPkiRotator().create_pending(ctx_of(intent, issuer))
    issuer.fail = error
    with pytest.raises(expected, match="app: sign a certificate at pki/sign/web"):
        X509VaultPkiRotator().create_pending(ctx_of(intent, issuer))
    second = FakeIssuer()
    next_pending = X509VaultPkiRotator().create_pending(ctx_of(intent, second))
    second.fail = error
    with pytest.raises(expected):
        X509VaultPkiRotator().revoke_old(ctx_of(intent, second, dict(next_pending.data)), pending.data)


def _assert_no_pem(exc: BaseException, pending: PendingVersion) -> None:
    text = str(exc)
    assert "-----" not in text
    for value in pending.data.values():
        assert value not in text


def test_a_certificate_for_another_key_fails_the_test_without_echoing_pem() -> None:
    issuer = FakeIssuer()
    intent = make_intent(PKI)
    rotator = X509VaultPkiRotator()
    pending = rotator.create_pending(ctx_of(intent, issuer))
    other = rotator.create_pending(ctx_of(intent, issuer))
    swapped = PendingVersion({**pending.data, "tls.crt": other.data["tls.crt"]}, pending.rotated)
    with pytest.raises(CredentialTestFailed, match="does not match its private key") as caught:
        rotator.test(ctx_of(intent, issuer), swapped)
    _assert_no_pem(caught.value, swapped)


def test_a_certificate_from_another_ca_or_out_of_validity_fails_the_test() -> None:
    intent = make_intent(PKI)
    rotator = X509VaultPkiRotator()
    issuer = FakeIssuer()
    pending = rotator.create_pending(ctx_of(intent, issuer))
    foreign = rotator.create_pending(ctx_of(intent, FakeIssuer()))
    mixed = PendingVersion({**pending.data, "ca.crt": foreign.data["ca.crt"]}, pending.rotated)
    with pytest.raises(CredentialTestFailed, match="not signed by the issuing CA") as caught:
        rotator.test(ctx_of(intent, issuer), mixed)
    _assert_no_pem(caught.value, mixed)
    with pytest.raises(CredentialTestFailed, match="not valid now"):
        rotator.test(ctx_of(intent, issuer, now=NOW + timedelta(days=31)), pending)
    with pytest.raises(CredentialTestFailed, match="not a PEM certificate"):
        rotator.test(ctx_of(intent, issuer), PendingVersion({**pending.data, "tls.crt": "junk"}, pending.rotated))
    missing = {k: v for k, v in pending.data.items() if k != "ca.crt"}
    with pytest.raises(CredentialTestFailed, match=r"lacks 'ca\.crt'"):
        rotator.test(ctx_of(intent, issuer), PendingVersion(missing, pending.rotated))


def test_no_pem_in_repr() -> None:
    issuer = FakeIssuer()
    intent = make_intent(PKI)
    pending = X509VaultPkiRotator().create_pending(ctx_of(intent, issuer))
    ctx = ctx_of(intent, issuer, dict(pending.data))
    assert "-----" not in repr(ctx) + repr(pending)
    signed = issuer.sign("pki", "web", csr_for(pending.data["tls.key"], "app", []), "app", [], None)
    assert "-----" not in repr(signed) and signed.serial in repr(signed)


# --------------------------------------------------------------------------------------------------- registry


def test_the_registry_resolves_the_annotation() -> None:
    intent = make_intent(PKI)
    assert registry.rotator_name_for(intent) == "x509-vault-pki"
    assert registry.BUILTINS["x509-vault-pki"] == "chamberlain.rotation.rotators.x509:X509VaultPkiRotator"
    assert isinstance(Registry.load().for_intent(intent), X509VaultPkiRotator)
    assert isinstance(Registry.load([]).for_intent(intent), X509VaultPkiRotator)  # stale metadata: fallback


# --------------------------------------------------------------------------------------------------- Vault adapter


@dataclass
class StubPki:
    answer: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def sign_certificate(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("sign", kw))
        if self.error is not None:
            raise self.error
        return self.answer

    def revoke_certificate(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("revoke", kw))
        if self.error is not None:
            raise self.error
        return {"data": {"revocation_time": 1}}


class StubHvac:
    def __init__(self, pki: StubPki) -> None:
        self.secrets = type("Secrets", (), {"pki": pki})()
        self.token = "t"
        self.url = "https://vault.test"


def test_vault_client_signs_through_hvac_and_the_adapter_delegates() -> None:
    ca = FakeIssuer()
    csr = csr_for(X509SelfSignedRotator().create_pending(
        ctx_of(make_intent({"chamberlain.dev/rotator": "x509"}), None)).data["tls.key"], "app", ["app"])
    signed = ca.sign("pki", "web", csr, "app", ["app"], None)
    stub = StubPki({"data": {"certificate": signed.certificate_pem, "issuing_ca": signed.issuing_ca_pem,
                             "ca_chain": list(signed.chain_pem), "serial_number": signed.serial}})
    issuer = VaultCertificateIssuer(VaultClient(StubHvac(stub), FakeClock()))
    got = issuer.sign("pki/int", "web", csr, "app", ["app", "app.shop"], "60s")
    assert got == signed
    issuer.revoke("pki/int", signed.serial)
    assert stub.calls == [
        ("sign", {"name": "web", "csr": csr, "common_name": "app", "mount_point": "pki/int",
                  "extra_params": {"format": "pem", "alt_names": "app,app.shop", "ttl": "60s"}}),
        ("revoke", {"serial_number": signed.serial, "mount_point": "pki/int"}),
    ]
    assert repr(issuer) == "VaultCertificateIssuer()"


@pytest.mark.parametrize(
    ("error", "expected", "kept"),
    [
        pytest.param(hvac.exceptions.InvalidRequest(errors=["common name app not allowed by this role"]),
                     InvalidRequest, "common name app not allowed", id="role-refuses-cn"),
        pytest.param(hvac.exceptions.InvalidRequest(errors=["bad csr -----BEGIN CERTIFICATE REQUEST-----MIIB"]),
                     InvalidRequest, "detail withheld", id="pem-echoed"),
        pytest.param(hvac.exceptions.InvalidRequest(errors=["bad " + "QUJD" * 20]),
                     InvalidRequest, "detail withheld", id="base64-echoed"),
        pytest.param(hvac.exceptions.Forbidden(errors=["permission denied"]), Forbidden, "403", id="forbidden"),
    ],
)
def test_vault_pki_errors_keep_short_details_and_never_bodies(error: Exception, expected: type[Exception],
                                                              kept: str) -> None:
    client = VaultClient(StubHvac(StubPki(error=error)), FakeClock())
    with pytest.raises(expected, match=kept) as caught:
        client.pki.sign("pki", "web", "csr", "app", [], None)
    assert "-----" not in str(caught.value) and "QUJDQUJD" not in str(caught.value)
    with pytest.raises(expected):
        client.pki.revoke("pki", "01:02")


def test_vault_client_refuses_an_answer_without_a_certificate() -> None:
    client = VaultClient(StubHvac(StubPki({"data": {"serial_number": "01"}})), FakeClock())
    with pytest.raises(AuthorityError, match="lacks the certificate"):
        client.pki.sign("pki", "web", "csr", "app", [], None)


# --------------------------------------------------------------------------------------------------- policy


def _topology(extra: list[SecretIntent]) -> Any:
    repo = load_repository(CORPUS / "base")
    assert repo.platform is not None
    return build_topology(repo.platform, [p.obj for p in repo.policies], [i.obj for i in repo.intents] + extra)


def test_the_orchestrator_may_sign_and_revoke_at_the_role_of_each_pki_intent() -> None:
    web = make_intent({**PKI, "chamberlain.dev/x509-pki-mount": "pki-int"}, name="web-cert")
    api = SecretIntent.model_validate({**make_intent(PKI, name="api-cert").model_dump(by_alias=True),
                                       "spec": {**make_intent(PKI).model_dump(by_alias=True)["spec"],
                                                "environments": ["prod"]}})
    files = vault_bundle.bundle(_topology([web, api]))
    again = vault_bundle.bundle(_topology([api, web]))
    assert files == again  # deterministic, whatever the order of the intents
    dev = files["policies/chamberlain.dev1.orchestrator.hcl"]
    prod = files["policies/chamberlain.prod-eu1.orchestrator.hcl"]
    assert 'path "pki-int/sign/web" {\n  capabilities = ["update"]\n}' in dev
    assert 'path "pki-int/revoke" {\n  capabilities = ["update"]\n}' in dev
    assert "# web-cert: sign its certificate (x509-vault-pki)" in dev
    assert 'path "pki/sign/web"' not in dev  # api-cert is placed in prod only
    assert 'path "pki/sign/web" {\n  capabilities = ["update"]\n}' in prod
    assert 'path "pki/revoke" {\n  capabilities = ["update"]\n}' in prod
    assert "pki/issue" not in dev + prod
    baseline = vault_bundle.bundle(_topology([]))
    assert "x509-vault-pki" not in "".join(baseline.values())


def test_a_pki_intent_without_a_role_cannot_be_rendered() -> None:
    broken = make_intent({"chamberlain.dev/rotator": "x509-vault-pki"}, name="web-cert")
    with pytest.raises(RenderError, match=r"SecretIntent web-cert: annotation chamberlain\.dev/x509-pki-role"):
        vault_bundle.bundle(_topology([broken]))
