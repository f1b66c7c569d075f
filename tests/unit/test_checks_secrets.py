"""Credential scanning (CH024) and literal secrets (CH020): what is caught, what public material is left alone.

Credential-shaped test strings are assembled at run time (prefix + generated body) so that this test file is
not itself a credential-looking file to the scanners that watch this repository.
"""

from __future__ import annotations

import random
import shutil
import string
import time
from pathlib import Path

import pytest

from chamberlain.checks.registry import run_checks
from chamberlain.checks.secrets import (
    allowed,
    check_credentials,
    check_literal_secrets,
    scan_binary,
    scan_text,
    secret_key_name,
)
from chamberlain.findings import Finding
from chamberlain.intent.loader import load_repository
from chamberlain.scan.judge import looks_random, shannon_entropy

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "tests" / "corpus" / "base"
REALISTIC = ROOT / "tests" / "fixtures" / "scanning" / "realistic"
SOPS_FIXTURES = ROOT / "tests" / "fixtures" / "scanning" / "sops"

_rnd = random.Random(20261128)
B62 = string.ascii_letters + string.digits


def rand(alphabet: str, n: int) -> str:
    return "".join(_rnd.choice(alphabet) for _ in range(n))


BEGIN = "-----BEGIN "
PEM_PRIVATE = BEGIN + "RSA " + "PRIVATE KEY-----"


def kinds(text: str) -> list[str]:
    return [h.kind for h in scan_text(text)]


def make_repo(tmp_path: Path, files: dict[str, str | bytes], base: Path = BASE) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(base, repo)
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return repo


# ------------------------------------------------------------------------------------------------ known shapes

POSITIVES = {
    "aws-access-key-id": "export AWS_ACCESS_KEY_ID=" + "AKIA" + "Z4QW7RTY3UPLMN5K",
    "aws-secret-access-key": "aws_secret_access_key = " + rand(B62 + "/+", 40),
    "github-classic": "token: " + "ghp_" + rand(B62, 36),
    "github-fine-grained": "GITHUB_TOKEN=" + "github_pat_" + rand(B62 + "_", 82),
    "gitlab": "CI_TOKEN " + "glpat-" + rand(B62, 20),
    "slack": "bot: " + "xoxb-" + rand(string.digits, 12) + "-" + rand(B62, 24),
    "slack-webhook": "url: https://hooks.slack.com/services/" + rand(B62, 9) + "/" + rand(B62, 9) + "/" + rand(B62, 24),
    "stripe": "STRIPE=" + "sk_" + "live_" + rand(B62, 24),
    "google-api-key": "key=" + "AIza" + rand(B62 + "_-", 35),
    "pem-private-key": "tls.key: |\n  " + PEM_PRIVATE + "\n  MIIEow\n",
    "openssh-private-key": BEGIN + "OPENSSH " + "PRIVATE KEY-----",
    "age-identity": "AGE-SECRET-KEY-" + "1" + rand("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58),
    "jwt": "Authorization: Bearer " + "eyJ" + rand(B62, 30) + "." + "eyJ" + rand(B62, 40) + "." + rand(B62, 43),
    "vault-hvs": "VAULT_TOKEN=" + "hvs." + rand(B62, 90),
    "openbao-service-token": "token s." + "Ab1" + rand(B62, 21),
    "url-password": "dsn: postgres://app:" + "S3cr3tP4ss" + "@db.example:5432/app",
    "yaml-password": "    password: " + "hunter2",
    "env-password": "DB_PASSWORD=" + "Tr0ub4dor&3",
    "json-api-key": '{"apiKey": "' + "q8Zr3LmT9xKp2Wv" + '"}',
    "django-secret-key": "SECRET_KEY = '" + "django-insecure-8x#k2!pq@z9" + "'",
    "quoted-password-with-space": 'password: "correct horse battery staple"',
    "high-entropy-base64": "blob: " + rand(B62 + "+/", 40),
    "high-entropy-base62-24": "x " + rand(B62, 24),
    "bcrypt-hash": "admin.password: $2a$10$" + rand(B62 + "./", 53),
    "base64-pem-private-key": "tls.key: " + "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2Z0lCQURBTkJna3Foa2lHOXcw",
}


@pytest.mark.parametrize("text", POSITIVES.values(), ids=POSITIVES.keys())
def test_credential_shapes_are_found(text: str) -> None:
    assert scan_text(text), text


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (POSITIVES["aws-access-key-id"], "aws-access-key-id"),
        (POSITIVES["github-classic"], "github-pat"),
        (POSITIVES["pem-private-key"], "private-key"),
        (POSITIVES["age-identity"], "age-secret-key"),
        (POSITIVES["jwt"], "jwt"),
        (POSITIVES["vault-hvs"], "vault-service-token"),
        (POSITIVES["url-password"], "url-password"),
        (POSITIVES["yaml-password"], "literal-assignment"),
        (POSITIVES["high-entropy-base64"], "high-entropy"),
        (POSITIVES["base64-pem-private-key"], "private-key"),
    ],
    ids=["aws", "github", "pem", "age", "jwt", "vault", "url", "assignment", "entropy", "base64-pem"],
)
def test_the_most_specific_kind_is_reported_once_per_line(text: str, kind: str) -> None:
    assert kinds(text) == [kind]


def test_hit_points_at_line_and_column() -> None:
    text = "a: 1\nb: 2\n  key: " + "AKIA" + "Z4QW7RTY3UPLMN5K\n"
    (hit,) = scan_text(text)
    assert (hit.line, hit.column) == (3, 8)


def test_a_private_key_is_one_finding_not_one_per_line() -> None:
    body = "\n".join(rand(B62 + "+/", 64) for _ in range(6))
    text = PEM_PRIVATE + "\n" + body + "\n-----END RSA " + "PRIVATE KEY-----\n"
    assert kinds(text) == ["private-key"]


# ------------------------------------------------------------------------------------------------ public material

NEGATIVES = {
    "age-recipient": "ageRecipients: [age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk]",
    "sops-enc-value": "password: ENC[AES256_GCM,data:/XB5bOEFxU9Qi9moJ1/cvQ==,"
                      "iv:/zaK5n7RELcONJ0LcCusAispGbLzv7WOBQDkSHoVwdQ=,tag:QTkWsPcMBAWLTihfkAhSog==,type:str]",
    "sops-kms-enc": "sops:\n    kms:\n        - arn: arn:aws:kms:eu-west-1:111122223333:key/abcd\n          enc: "
                    + rand(B62 + "+/", 180) + "\n    mac: ENC[AES256_GCM,data:" + rand(B62, 40)
                    + ",iv:" + rand(B62, 43) + "=,tag:" + rand(B62, 22) + "==,type:str]\n",
    "age-armor": "enc: |\n  -----BEGIN AGE ENCRYPTED FILE-----\n  " + rand(B62 + "+/", 64) + "\n  "
                 + rand(B62 + "+/", 40) + "==\n  -----END AGE ENCRYPTED FILE-----\n",
    "certificate": BEGIN + "CERTIFICATE-----\n" + rand(B62 + "+/", 64) + "\n" + rand(B62 + "+/", 64)
                   + "\n-----END CERTIFICATE-----",
    "base64-certificate": "caBundle: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJlekNDQVNHZ0F3SUJBZ0lVUjZ0",
    "ssh-public-key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + rand(B62 + "+/", 43) + " deploy@acme",
    "image-digest": "image: ghcr.io/acme/app@sha256:" + rand("0123456789abcdef", 64),
    "sri-integrity": "integrity: sha512-" + rand(B62 + "+/", 86) + "==",
    "commit-sha": "targetRevision: " + rand("0123456789abcdef", 40),
    "uuid": "uid: 6f1c2a8e-3b7d-4c55-9e0a-0d2f4b6a8c91",
    "k8s-identifiers": "kind: V1PersistentVolumeClaimSpec TLS_AES_128_GCM_SHA256 io.k8s.api.core.v1.SecretKeySelector",
    "url-path": "repoURL: https://github.com/acme-example/platform-intent/blob/main/docs/RotationPolicies.md",
    "url-placeholder": "url: postgres://user:<password>@host:5432/db and redis://:${REDIS_PASSWORD}@cache:6379",
    "eso-template": 'SMTP_URL: "smtp://{{ .username }}:{{ .password }}@smtp.example:587"',
    "password-reference": "password: ${DB_PASSWORD}",
    "password-key-name": "passwordKey: password",
    "existing-secret-name": "existingSecret: app-db-v2",
    "secret-volume": "secret: {secretName: payments-kafka}",
    "service-account-token": "automountServiceAccountToken: false",
    "token-file-path": "bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token",
    "masked-password": "password: '********'",
    "prose": "Rotation never requires a Git change; the orchestrator writes a new version to Vault.",
}


@pytest.mark.parametrize("text", NEGATIVES.values(), ids=NEGATIVES.keys())
def test_public_or_encrypted_material_is_not_flagged(text: str) -> None:
    assert scan_text(text) == []


def test_intent_documents_may_map_keys_named_like_passwords(tmp_path: Path) -> None:
    # Inside intent documents 'DB_PASSWORD: password' maps a Secret key to an intent key; outside it would be a
    # literal (weak) password in a ConfigMap.
    intent = (BASE / "intents" / "app.yaml").read_text().replace(
        "{DB_PASSWORD: password, DB_USER: username}", "{DB_PASSWORD: password, DB_PASS: pass-2024}"
    )
    repo = load_repository(make_repo(tmp_path, {"intents/app.yaml": intent}))
    assert list(check_credentials(repo)) == []
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  DB_PASS: pass-2024\n"
    repo = load_repository(make_repo(tmp_path / "2", {"manifests/cm.yaml": config}))
    assert [(f.file, f.line, f.rule) for f in check_credentials(repo)] == [("manifests/cm.yaml", 5, "CH024")]


# ------------------------------------------------------------------------------------------------ allow marker


@pytest.mark.parametrize(
    ("line", "rule", "expected"),
    [
        ("x  # chamberlain:allow CH024", "CH024", True),
        ("x  # chamberlain:allow CH020, CH024", "CH024", True),
        ("x  # chamberlain:allow CH020", "CH024", False),
        ("x  # chamberlain:allow CH0241", "CH024", False),
        ("x  # chamberlain:allow", "CH024", False),
        ("x", "CH024", False),
    ],
    ids=["single", "list", "other-rule", "longer-id", "no-rule", "none"],
)
def test_allow_marker(line: str, rule: str, expected: bool) -> None:
    assert allowed(line, rule) is expected


def test_allow_marker_suppresses_only_its_line() -> None:
    text = POSITIVES["yaml-password"] + "  # chamberlain:allow CH024\n" + POSITIVES["yaml-password"] + "\n"
    assert [h.line for h in scan_text(text)] == [2]


# ------------------------------------------------------------------------------------------------ randomness


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (rand(B62 + "+/", 40), True),
        (rand(B62 + "-_", 32), True),
        (rand(B62, 20), True),
        ("V1PersistentVolumeClaimTemplate", False),
        ("orders-db-endpoint-reporting-prod", False),
        ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", False),
        (rand("0123456789abcdef", 64), False),
        ("6f1c2a8e-3b7d-4c55-9e0a-0d2f4b6a8c91", False),
        (rand(B62, 19), False),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", False),
        (rand(string.ascii_lowercase + string.digits, 40), True),
        (rand(string.ascii_lowercase + string.digits, 24), False),
        ("gen-oqrwrp95gy5-00e10000-x2k4q", False),
    ],
    ids=["base64", "base64url", "base62-20", "camel-case", "kebab", "cipher-suite", "hex-digest", "uuid",
         "too-short", "repeated", "lowercase-40", "lowercase-24", "generated-dns-name"],
)
def test_looks_random(token: str, expected: bool) -> None:
    assert looks_random(token) is expected


def test_shannon_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


# ------------------------------------------------------------------------------------------------ binary files


def test_binary_file_is_scanned_for_known_shapes() -> None:
    raw = b"\x00\x01PK\x03\x04" + (BEGIN + "EC " + "PRIVATE KEY-----").encode() + bytes(range(256))
    (hit,) = scan_binary(raw)
    assert hit.kind == "private-key" and hit.line is None


def test_binary_and_keystore_files_in_a_repository(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "keys/bundle.bin": b"\x00\xff" + ("AKIA" + "Z4QW7RTY3UPLMN5K").encode() + b"\x00",
        "keys/client.p12": b"\x30\x82\x0a\x00" + bytes(range(200)),
        "images/logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    }
    repo = load_repository(make_repo(tmp_path, files))
    assert sorted((f.file, f.line) for f in check_credentials(repo)) == [
        ("keys/bundle.bin", None),
        ("keys/client.p12", None),
    ]


# ------------------------------------------------------------------------------------------------ repository


def test_base_corpus_is_clean() -> None:
    assert run_checks(load_repository(BASE)) == []


def test_realistic_public_material_is_clean(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo)
    shutil.copytree(REALISTIC, repo, dirs_exist_ok=True)
    loaded = load_repository(repo)
    assert {f.rel for f in loaded.files} >= {"bootstrap/smtp-relay.sops.yaml", "config/app.sops.json",
                                             "unseal/root-share-1.age", "certs/vault-ca.crt"}
    assert run_checks(loaded) == []


def test_findings_never_contain_the_value(tmp_path: Path) -> None:
    secrets = [POSITIVES["github-classic"].split()[-1], "S3cr3tP4ss", "Tr0ub4dor&3", rand(B62 + "+/", 40)]
    text = (
        f"a: {secrets[0]}\nb: postgres://app:{secrets[1]}@db/app\nDB_PASSWORD={secrets[2]}\nblob: {secrets[3]}\n"
    )
    repo = load_repository(make_repo(tmp_path, {"notes/leak.txt": text}))
    findings = run_checks(repo)
    assert len(findings) == 4
    for f in findings:
        assert not any(s in f.message for s in secrets), f.message


def test_credential_in_an_intent_is_also_a_literal_secret(tmp_path: Path) -> None:
    intent = (BASE / "intents" / "app.yaml").read_text().replace(
        "purpose: Postgres password of the app API",
        "purpose: Postgres password of the app API, formerly " + "AKIA" + "Z4QW7RTY3UPLMN5K",
    )
    repo = load_repository(make_repo(tmp_path, {"intents/app.yaml": intent}))
    found = sorted((f.rule, f.line, f.object) for f in check_credentials(repo))
    assert found == [("CH020", 6, "SecretIntent/app-db"), ("CH024", 6, None)]


def test_scan_is_linear_and_fast() -> None:
    # Roughly 10k intents' worth of text: the whole credential scan has a few hundred milliseconds of the
    # 3-second validate+render budget; allow generous slack for slow CI machines.
    text = (BASE / "intents" / "app.yaml").read_text() * 2500
    start = time.perf_counter()
    assert scan_text(text) == []
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------------------------------------------ CH020


SECRET = """apiVersion: v1
kind: Secret
metadata: {name: app-db, namespace: app}
type: Opaque
data:
  password: aHVudGVyMg==
"""


def literal_findings(tmp_path: Path, files: dict[str, str | bytes]) -> list[Finding]:
    return list(check_literal_secrets(load_repository(make_repo(tmp_path, files))))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (SECRET, [("CH020", 6)]),
        (SECRET.replace("data:\n  password: aHVudGVyMg==\n", "stringData: {token: abc}\n"), [("CH020", 5)]),
        (SECRET.replace("  password: aHVudGVyMg==\n", "  password: ''\n"), []),
        (SECRET.replace("data:\n  password: aHVudGVyMg==\n", "data: {}\n"), []),
        (SECRET.replace("kind: Secret", "kind: Secret  # chamberlain:allow CH020"), []),
        ("apiVersion: v1\nkind: List\nitems:\n  - " + SECRET.replace("\n", "\n    ").rstrip() + "\n",
         [("CH020", 9)]),
        (SECRET.replace("apiVersion: v1", "apiVersion: example.com/v1"), []),
    ],
    ids=["data", "stringData", "empty-value", "no-keys", "allow-marker", "list-item", "other-group"],
)
def test_plaintext_secret_manifest(tmp_path: Path, content: str, expected: list[tuple[str, int]]) -> None:
    findings = literal_findings(tmp_path, {"manifests/secret.yaml": content})
    assert [(f.rule, f.line) for f in findings] == expected


def test_plaintext_secret_message_names_keys_not_values(tmp_path: Path) -> None:
    (finding,) = literal_findings(tmp_path, {"manifests/secret.yaml": SECRET})
    assert "password" in finding.message and "aHVudGVyMg" not in finding.message


def test_sops_encrypted_secret_is_not_a_literal(tmp_path: Path) -> None:
    encrypted = (SOPS_FIXTURES / "smtp-relay.sops.yaml").read_text()
    assert literal_findings(tmp_path, {"secrets/smtp.sops.yaml": encrypted}) == []


def test_plaintext_bootstrap_file_is_left_to_ch021(tmp_path: Path) -> None:
    intent = (REALISTIC / "intents" / "bootstrap.yaml").read_text()
    findings = literal_findings(tmp_path, {"intents/bootstrap.yaml": intent, "bootstrap/smtp-relay.sops.yaml": SECRET})
    assert findings == []


@pytest.mark.parametrize(
    ("generator", "expected_line"),
    [
        ("password: {type: fixed-name, name: Hunter2}", 11),
        ("api-key: {type: fixed-name, name: partner}", 11),
        ("webhook.github.secret: {type: fixed-name, name: partner}", 11),
        ("login: {type: fixed-name, name: Xk9pQ2mZ7vLwT4}", 11),
        ("username: {type: fixed-name, name: payments_app}", None),
        ("access-key-id: {type: fixed-name, name: backup}", None),
        ("password: {type: password, length: 32}", None),
    ],
    ids=["password", "api-key", "dotted-secret", "random-name", "username", "key-id", "generated"],
)
def test_intent_pins_a_secret_value(tmp_path: Path, generator: str, expected_line: int | None) -> None:
    intent = f"""apiVersion: chamberlain.dev/v1alpha1
kind: SecretIntent
metadata: {{name: partner}}
spec:
  owner: team-app
  purpose: Partner API credential
  classification: runtime
  source:
    generate:
      other: {{type: token}}
      {generator}
"""
    findings = literal_findings(tmp_path, {"intents/partner.yaml": intent})
    assert [f.line for f in findings] == ([expected_line] if expected_line else [])
    assert all(f.rule == "CH020" and f.object == "SecretIntent/partner" for f in findings)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("password", True), ("DB_PASSWORD", True), ("adminPassword", True), ("api-key", True), ("apiKey", True),
        ("token", True), ("client_secret", True), ("cookie-key", True), ("hmac", True),
        ("username", False), ("user", False), ("host", False), ("token-name", False), ("access-key-id", False),
        ("password-file", False), ("keys", False), ("passenger", False),
    ],
)
def test_secret_key_name(key: str, expected: bool) -> None:
    assert secret_key_name(key) is expected


def test_guesses_are_warnings_and_known_credentials_errors(tmp_path: Path) -> None:
    repo = load_repository(make_repo(tmp_path, {
        "manifests/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n"
                             "  blob: " + rand(B62, 44) + "\n"
                             "  TELEGRAM_TOKEN: '0141:" + rand(B62, 20) + "'\n",
        "scripts/deploy.sh": "export GITHUB_TOKEN=ghp_" + rand(B62, 36) + "\n",
    }))
    found = sorted((f.file, f.line, f.rule, f.severity) for f in check_credentials(repo))
    assert found == [("manifests/cm.yaml", 5, "CH128", "warning"), ("manifests/cm.yaml", 6, "CH128", "warning"),
                     ("scripts/deploy.sh", 1, "CH024", "error")]
