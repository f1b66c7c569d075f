"""Context-aware credential detection: assignments in many syntaxes, placeholders and public material.

Every value here is generated per run (never a real credential), so the test file itself stays clean."""

from __future__ import annotations

import base64
import json
import random
import string

import pytest

from chamberlain.scan import assignments
from chamberlain.scan.engine import scan_text
from chamberlain.scan.judge import assigned_credential, placeholder, reference

RNG = random.Random(1515)
ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


TOKEN = rand(32)
HEX = rand(40, "0123456789abcdef")
LOWER = rand(24, string.ascii_lowercase + string.digits)
PASSWORD = "!" + rand(10) + "(x"

# One credential per snippet; each is a syntax real repositories use.
SYNTAXES = {
    "yaml": f"api_token: {TOKEN}",
    "yaml-quoted": f"apiToken: '{TOKEN}'",
    "json": f'{{\n  "client_secret": "{TOKEN}"\n}}',
    "json-escaped-newline": f'{{"config.ini": "APP_TOKEN={TOKEN}\\nBACKUP=true"}}',
    "dotenv": f"STRIPE_SECRET_KEY={TOKEN}",
    "ini": f"[auth]\npassword = {PASSWORD}",
    "toml": f'[service]\napi_key = "{TOKEN}"',
    "hcl": f'resource "x" "y" {{\n  access_key = "{TOKEN}"\n}}',
    "shell-export": f"export GITHUB_TOKEN={TOKEN}",
    "dockerfile-env": f"ENV DB_PASSWORD {PASSWORD}",
    "dockerfile-env-equals": f"ENV API_TOKEN={TOKEN}",
    "go-short": f'vendorToken := "{LOWER}"',
    "go-var": f'var vendorToken string = "{LOWER}"',
    "go-backticks": f"vendorToken := `{LOWER}`",
    "python": f"VENDOR_TOKEN = '{LOWER}'",
    "js-const": f'const vendorApiKey = "{TOKEN}";',
    "ts-typed": f'const vendorToken: string = "{TOKEN}";',
    "kotlin-typed": f'var vendorToken: String = "{TOKEN}"',
    "java": f'String vendorToken = "{TOKEN}";',
    "csharp": f'string vendorToken = "{TOKEN}";',
    "ruby-hash": f'  "vendorToken" => "{TOKEN}"',
    "php": f'$vendorToken = "{TOKEN}";',
    "php-concat": f'$vendorToken .= "{TOKEN}"',
    "make-simple": f'VENDOR_TOKEN := "{TOKEN}"',
    "make-shell": f'VENDOR_TOKEN ::= "{TOKEN}"',
    "make-posix": f'VENDOR_TOKEN :::= "{TOKEN}"',
    "make-conditional": f'VENDOR_TOKEN ?= "{TOKEN}"',
    "set-property": f'System.setProperty("VENDOR_TOKEN", "{TOKEN}")',
    "environ-subscript": f'os.environ["VENDOR_TOKEN"] = "{TOKEN}"',
    "xml-element": f"<vendorToken>\n    {TOKEN}\n</vendorToken>",
    "xml-add-key": f'<add key="ClearTextPassword" value="{PASSWORD}" />',
    "k8s-env": f"env:\n  - name: DB_PASSWORD\n    value: {PASSWORD}\n",
    "k8s-env-json": f'{{"name": "API_TOKEN", "value": "{TOKEN}"}}',
    "configmap-data": f"kind: ConfigMap\ndata:\n  SECRET_KEY_BASE: {HEX}{HEX}\n",
    "netrc": f"machine api.example.com login deploy password {PASSWORD}",
    "netrc-multiline": f"machine api.example.com\n  login deploy\n  password {PASSWORD}\n",
    "npmrc": f"//registry.npmjs.org/:_authToken={TOKEN}",
    "pypirc": f"[pypi]\nusername = __token__\npassword = {PASSWORD}",
    "docker-config": json.dumps({"auths": {"registry.example.com": {
        "auth": base64.b64encode(f"deploy:{TOKEN}".encode()).decode()}}}, indent=2),
    "url": f"DATABASE_URL=postgres://app:{PASSWORD}@db.internal:5432/app",
    "curl-user": f"curl -u elastic:{PASSWORD} https://localhost:9200",
    "auth-header": f'curl -H "Authorization: Bearer {TOKEN}" https://api.example.com',
    "cli-flag": f"vendor login --token {TOKEN}",
    "password-letters-only": "password: rootpasswd",
    "password-digits-only": "db_password: 84920175",
    "password-leading-symbols": "password: '!$@*Troub4dor'",
    "password-with-parenthesis": "password = Pa(ss)w0rd-9",
    "passphrase-quoted": 'password: "correct horse battery staple"',
    "hex-secret-key-base": f"SECRET_KEY_BASE={HEX}",
    "digits-id-under-token-key": "discord_token: 847125766457203578",
    "uuid-under-key": "HEROKU_API_KEY=c938ec22-6577-420b-993e-0d88218b68e5",
}


@pytest.mark.parametrize("text", SYNTAXES.values(), ids=SYNTAXES.keys())
def test_a_credential_is_found_in_every_syntax(text: str) -> None:
    hits = [h for h in scan_text(text) if h.kind not in ("high-entropy", "truncated")]
    assert hits, text
    # Findings name the kind and the place, never the value.
    assert all(TOKEN not in h.label and PASSWORD not in h.label for h in hits)


NOT_CREDENTIALS = {
    "reference-env": "password: ${DB_PASSWORD}",
    "reference-shell": "export TOKEN=$VENDOR_TOKEN",
    "reference-template": "password: '{{ .password }}'",
    "reference-eso-template": 'token: "{{ .orders_db_app_password | toString }}"',
    "reference-code": "password = settings.DB_PASSWORD",
    "reference-call": "token = os.getenv('VENDOR_TOKEN')",
    "reference-constant": "access_token=ACCESS_TOKEN",
    "reference-vault": "password: vault:secret/data/app#password",
    "placeholder-angle": "api_key: <your-api-key>",
    "placeholder-x": "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "placeholder-changeme": "password: changeme",
    "placeholder-example": "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "placeholder-stars": "password: '********'",
    "placeholder-redacted": "token: [REDACTED]",
    "placeholder-alphabet": 'secret_key => "sk_abcdefghijklmnopqrstuvwxyz123"',
    "config-word": "password: required",
    "key-name-map": "keys: {DB_PASSWORD: password}",
    "secret-name": "existingSecret: orders-db-v2",
    "type-field": "password: {type: password, length: 32}",
    "csrf": f"csrf_token = '{TOKEN}'",
    "pagination": f"next_token: {TOKEN}",
    "public-token": f'publicToken = "{TOKEN}"',
    "password-file": "password_file: /run/secrets/db",
    "version": "token_version: 1.2.3",
    "short": "token: abc",
    "max-tokens": "max_tokens: 4096",
    "prose": "The password is stored in Vault, never in Git.",
    "maven-coordinate": 'notes = "Maven - io.jsonwebtoken:jjwt-jackson-0.11.2"',
    "block-scalar": "password: |\n  see below",
    "sops": "password: ENC[AES256_GCM,data:Tr2q,iv:" + rand(43) + "=,tag:" + rand(22) + "==,type:str]",
}


@pytest.mark.parametrize("text", NOT_CREDENTIALS.values(), ids=NOT_CREDENTIALS.keys())
def test_references_placeholders_and_names_are_not_credentials(text: str) -> None:
    assert [h for h in scan_text(text) if h.kind != "high-entropy"] == [], text


def test_public_material_is_not_reported() -> None:
    def b64url(n: int) -> str:
        return base64.urlsafe_b64encode(RNG.randbytes(n)).decode().rstrip("=")

    jwks = json.dumps({"keys": [{"kty": "RSA", "kid": b64url(16), "use": "sig", "n": b64url(256), "e": "AQAB",
                                 "x5c": [base64.b64encode(RNG.randbytes(600)).decode()]}]}, indent=2)
    assert scan_text(jwks) == []
    salt, digest = (base64.b64encode(RNG.randbytes(20)).decode() for _ in range(2))
    key = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 " + RNG.randbytes(32)).decode()
    known_hosts = f"|1|{salt}|{digest} ssh-ed25519 {key}\n" * 3
    assert scan_text(known_hosts) == []


def test_a_private_json_web_key_is_a_credential() -> None:
    jwk = json.dumps({"kty": "EC", "crv": "P-256", "x": rand(43), "y": rand(43), "d": rand(43)}, indent=2)
    assert [h.kind for h in scan_text(jwk)] == ["jwk-private-key"]


def test_private_key_headers_without_key_material_are_documentation() -> None:
    assert scan_text("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n") == []
    body = "\n".join(rand(64, ALNUM + "+/") for _ in range(4))
    assert [h.kind for h in scan_text(f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")] == [
        "private-key"]


@pytest.mark.parametrize(("key", "kind"), [
    ("DB_PASSWORD", "password"), ("clientSecret", "secret"), ("x-api-key", "token"), ("SECRET_KEY_BASE", "token"),
    ("_authToken", "token"), ("some_api_token_123", "token"), ("AWS_SECRET_ACCESS_KEY", "token"),
    ("passwordFile", None), ("csrf_token", None), ("keyRef", None), ("primaryKey", None), ("max_tokens", None),
    ("tokenUrl", None), ("secretName", None), ("publicKey", None), ("bypass", None), ("passwordPolicy", None),
])
def test_key_names_are_classified(key: str, kind: str | None) -> None:
    got = assignments.key_kind(key)
    assert (got[0] if got else None) == kind


def test_placeholder_and_reference_judges() -> None:
    assert placeholder("xoxb-xxxxxxxxxxxx-xxxxxxxxxxxx")
    assert placeholder("AKIAIOSFODNN7EXAMPLE")
    assert placeholder("<token>")
    assert not placeholder(TOKEN)
    assert reference("${TOKEN}") and reference("{{ .token }}") and reference("process.env.API_KEY")
    assert not reference("dp.pt." + LOWER)  # a dotted run of generated segments is a token, not an attribute
    assert assigned_credential("hunter2!", "password", ("db", "password"))
    assert not assigned_credential("db-password", "password", ("db", "password"))


def test_values_never_reach_a_hit() -> None:
    canary = "Canary" + rand(24)
    text = "\n".join(snippet.replace(TOKEN, canary) for snippet in SYNTAXES.values())
    for hit in scan_text(text):
        assert canary not in repr(hit)


def test_a_provider_named_key_counts_with_the_providers_format_only() -> None:
    uuid = "c938ec22-6577-420b-993e-0d88218b68e5"
    assert [h.kind for h in scan_text(f"HEROKU_KEY = '{uuid}'")] == ["heroku-api-key"]
    assert [h.kind for h in scan_text(f"BUNDLE_ENTERPRISE__CONTRIBSYS__COM: {HEX[:8]}:{HEX[8:16]}")] == [
        "sidekiq-secret"]
    # The provider's name inside another word is not the provider: ``rookTable`` is not Okta.
    assert [h for h in scan_text(f"rookTable = 00{TOKEN}") if h.kind != "high-entropy"] == []


def test_a_value_under_a_providers_name_in_no_format_of_it_is_unconfirmed() -> None:
    # Telegram bot tokens are <bot id>:<35 characters>; this one is not, so it is a warning, not an error.
    assert [h.kind for h in scan_text(f'telegram_api_token = "0141:{LOWER}x-{LOWER}"')] == ["unconfirmed-token"]
    assert [h.kind for h in scan_text('"token1": "xoxp-7Hq2kZp9Lw4n"')] == ["unconfirmed-token"]
