"""Our own labelled corpus for the credential-scan benchmark: positives built from the provider formats, placed in
the assignment syntaxes real repositories use, and near-miss lookalikes that must not be reported.

Not a benchmark itself (``bench_scan.py`` writes it into its tree and scores both scanners against the labels).
Everything here is generated from a seed: no token, key or test file is copied from any scanner's test suite, and
every "credential" is random data in a documented *shape*, never a working key.

- **Positives**: every format of :data:`chamberlain.scan.formats.FORMATS` (``sample(fmt, rng)``), each in a few
  syntaxes (YAML, JSON, ``.env``, INI, TOML, HCL, shell, Dockerfile ``ENV``, Go ``:=`` and ``var x string =``,
  Python, JS/TS, Java, Ruby ``=>``, PHP ``$x =``, Makefile ``::=``/``?=``, Kubernetes ``env[].value``, a JSON
  Secret, ``.netrc``, docker ``config.json`` auths, ``.npmrc`` ``_authToken``, ``.pypirc`` password, connection
  URLs), plus generic passwords of awkward shapes (leading ``!$@*``, a ``(``, letters only, digits only, hex
  under ``SECRET_KEY_BASE``). Each label is (file, line, kind): the line the value sits on.
- **Near misses**, one per file (a hit anywhere in that file is a false alarm): placeholders (``ghp_xxxx…``,
  ``<your-token>``, ``${TOKEN}``, ``{{ .password }}``, ``changeme``), truncated tokens, certificates, public keys,
  JWKS ``n``/``e``, SealedSecret ``encryptedData``, SOPS ``ENC[...]``, hashed ``known_hosts``, UUIDs, Git SHAs,
  image digests, lock-file integrity hashes.

Positives of every kind are drawn from the formats table (``chamberlain.scan.formats``), so the recall figures say how
well each tool finds *documented* formats placed in many syntaxes; the near misses are written here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chamberlain.scan.formats import FORMATS as _FORMATS
from chamberlain.scan.formats import Format
from chamberlain.scan.formats import sample as _sample

# ------------------------------------------------------------------------------------------------ formats


FORMATS: Sequence[Format] = _FORMATS
sample: Callable[[Format, random.Random], str] = _sample
FORMAT_SOURCE = f"chamberlain.scan.formats ({len(FORMATS)} formats)"


def literal_prefix(fmt: Any) -> str:
    """The literal parts a token starts with (``ghp_``); empty for formats with no distinctive prefix."""
    out = []
    for part in fmt.parts:
        if not isinstance(part, str):
            break
        out.append(part)
    return "".join(out)


# ------------------------------------------------------------------------------------------------ labels


@dataclass(frozen=True)
class Label:
    line: int  # 1-based line of the value
    kind: str  # the expected kind (positive) or the lookalike's kind (near miss)
    syntax: str
    positive: bool


@dataclass
class CorpusFile:
    path: str  # relative to the tree's root, "/"-separated
    data: bytes
    labels: list[Label] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ syntaxes

# A syntax places (key, value) in a small realistic file: (file name, lines, index of the value's line).
Placed = tuple[str, list[str], int]
Syntax = Callable[[str, str], Placed]


def _upper(key: str) -> str:
    return key.upper().replace("-", "_").replace(".", "_")


def _camel(key: str) -> str:
    words = key.replace("-", "_").split("_")
    return words[0].lower() + "".join(w.capitalize() for w in words[1:])


def _yaml(k: str, v: str) -> Placed:
    return "config.yaml", ["service:", "  name: billing", "  replicas: 3", f"  {k}: {v}", "  timeout: 30s"], 3


def _json(k: str, v: str) -> Placed:
    return "settings.json", ["{", '  "name": "billing",', f'  "{k}": "{v}",', '  "retries": 3', "}"], 2


def _env(k: str, v: str) -> Placed:
    return ".env", ["APP_ENV=production", "LOG_LEVEL=info", f"{_upper(k)}={v}", "PORT=8080"], 2


def _ini(k: str, v: str) -> Placed:
    return "app.ini", ["[server]", "port = 8080", "", "[credentials]", f"{k} = {v}"], 4


def _toml(k: str, v: str) -> Placed:
    return "config.toml", ["[service]", 'name = "billing"', f'{k} = "{v}"', "debug = false"], 2


def _hcl(k: str, v: str) -> Placed:
    return "main.tf", ['resource "service_config" "billing" {', '  name = "billing"', f'  {k} = "{v}"', "}"], 2


def _shell(k: str, v: str) -> Placed:
    return "deploy.sh", ["#!/bin/sh", "set -eu", f'export {_upper(k)}="{v}"', './bin/deploy "$@"'], 2


def _dockerfile(k: str, v: str) -> Placed:
    return "Dockerfile", ["FROM debian:bookworm-slim", "WORKDIR /app", f"ENV {_upper(k)}={v}", 'CMD ["/app/run"]'], 2


def _go_short(k: str, v: str) -> Placed:
    return "client.go", ["package client", "", "func newClient() *Client {", f'\t{_camel(k)} := "{v}"',
                         f"\treturn &Client{{key: {_camel(k)}}}", "}"], 3


def _go_var(k: str, v: str) -> Placed:
    return "config.go", ["package config", "", f'var {_camel(k)} string = "{v}"', ""], 2


def _python(k: str, v: str) -> Placed:
    return "settings.py", ['"""Service settings."""', "import os", "", f'{_upper(k)} = "{v}"', 'REGION = "eu-1"'], 3


def _js(k: str, v: str) -> Placed:
    return "config.js", ["'use strict';", f"const {_camel(k)} = '{v}';", f"module.exports = {{ {_camel(k)} }};"], 1


def _ts_object(k: str, v: str) -> Placed:
    return "config.ts", ["export const config = {", "  region: 'eu-1',", f"  {_camel(k)}: \"{v}\",", "};"], 2


def _java(k: str, v: str) -> Placed:
    return "Config.java", ["package com.example;", "", "public final class Config {",
                           f'    private static final String {_upper(k)} = "{v}";', "}"], 3


def _ruby(k: str, v: str) -> Placed:
    return "config.rb", ["CONFIG = {", '  "region" => "eu-1",', f'  "{k}" => "{v}",', "}.freeze"], 2


def _php(k: str, v: str) -> Placed:
    return "config.php", ["<?php", "", f"${_camel(k)} = '{v}';", "return ['region' => 'eu-1'];"], 2


def _make_immediate(k: str, v: str) -> Placed:
    return "Makefile", ["IMAGE ::= registry.example.com/app", f"{_upper(k)} ::= {v}", "", "all:", "\t./build"], 1


def _make_default(k: str, v: str) -> Placed:
    return "Makefile", [f"{_upper(k)} ?= {v}", "", "deploy:", "\t./deploy.sh"], 0


def _k8s_env(k: str, v: str) -> Placed:
    return "deployment.yaml", [
        "apiVersion: apps/v1", "kind: Deployment", "metadata:", "  name: billing", "spec:", "  template:",
        "    spec:", "      containers:", "        - name: app", "          image: billing:1.4.2", "          env:",
        f"            - name: {_upper(k)}", f'              value: "{v}"', "            - name: PORT",
        '              value: "8080"'], 12


def _k8s_secret_json(k: str, v: str) -> Placed:
    return "secret.json", ["{", '  "apiVersion": "v1",', '  "kind": "Secret",',
                           '  "metadata": {"name": "billing"},', '  "stringData": {', f'    "{k}": "{v}"', "  }",
                           "}"], 5


SYNTAXES: dict[str, Syntax] = {
    "yaml": _yaml, "json": _json, "env": _env, "ini": _ini, "toml": _toml, "hcl": _hcl, "shell": _shell,
    "dockerfile": _dockerfile, "go-short": _go_short, "go-var": _go_var, "python": _python, "js": _js,
    "ts-object": _ts_object, "java": _java, "ruby": _ruby, "php": _php, "make-immediate": _make_immediate,
    "make-default": _make_default, "k8s-env": _k8s_env, "k8s-secret-json": _k8s_secret_json,
}


def _netrc(token: str) -> Placed:
    return ".netrc", ["machine git.example.com", "  login deploy", f"  password {token}"], 2


def _docker_config(token: str) -> Placed:
    auth = base64.b64encode(f"deploy:{token}".encode()).decode()
    return "config.json", ["{", '  "auths": {', '    "registry.example.com": {', f'      "auth": "{auth}"', "    }",
                           "  }", "}"], 3


def _npmrc(token: str) -> Placed:
    return ".npmrc", ["registry=https://registry.npmjs.org/", f"//registry.npmjs.org/:_authToken={token}"], 1


def _pypirc(token: str) -> Placed:
    return ".pypirc", ["[distutils]", "index-servers = pypi", "", "[pypi]", "username = __token__",
                       f"password = {token}"], 5


def _url(password: str) -> Placed:
    return "app.env", ["APP_ENV=production", f"DATABASE_URL=postgres://billing:{password}@db.internal:5432/billing",
                       "POOL_SIZE=10"], 1


FILE_SYNTAXES: dict[str, Callable[[str], Placed]] = {
    "netrc": _netrc, "docker-config": _docker_config, "npmrc": _npmrc, "pypirc": _pypirc, "url": _url,
}


# ------------------------------------------------------------------------------------------------ generation

PASSWORD_SYMBOLS = "!$@*%^&#()-_=+"


def _password(rng: random.Random, shape: str) -> str:
    letters, digits = string.ascii_letters, string.digits
    if shape == "mixed":
        return "".join(rng.choice(letters + digits + PASSWORD_SYMBOLS) for _ in range(20))
    if shape == "leading-symbol":
        return rng.choice("!$@*") + "".join(rng.choice(letters + digits) for _ in range(15))
    if shape == "paren":
        return "".join(rng.choice(letters + digits) for _ in range(7)) + "(" + "".join(
            rng.choice(letters + digits) for _ in range(8))
    if shape == "letters":
        return "".join(rng.choice(letters) for _ in range(18))
    if shape == "digits":
        return "".join(rng.choice(digits) for _ in range(14))
    return "".join(rng.choice("0123456789abcdef") for _ in range(128))  # hex, as Rails' secret_key_base


PASSWORD_KEYS = {"mixed": "db_password", "leading-symbol": "admin_password", "paren": "smtp_password",
                 "letters": "redis_password", "digits": "api_pin_password", "hex": "secret_key_base"}


class _Tree:
    """Assigns each generated file its own directory (``svc-NNNN/``), so syntaxes keep their usual file names."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        self.files: list[CorpusFile] = []

    def add(self, placed: Placed, kind: str, syntax: str, positive: bool) -> None:
        name, lines, index = placed
        self.count += 1
        path = f"{self.prefix}/svc-{self.count:04d}/{name}"
        self.files.append(CorpusFile(path, ("\n".join(lines) + "\n").encode(),
                                     [Label(index + 1, kind, syntax, positive)]))


def _key_for(fmt: Format) -> str:
    words = fmt.kind.replace("-", "_")
    if fmt.context and fmt.context[0].replace("-", "_") not in words:
        words = f"{fmt.context[0].replace('-', '_')}_{words}"
    return words


def positives(rng: random.Random, per_format: int = 3) -> list[CorpusFile]:
    """Every format ``per_format`` times in rotating syntaxes, the file syntaxes, and the awkward passwords."""
    tree = _Tree("pos")
    names = list(SYNTAXES)
    turn = 0
    for fmt in FORMATS:
        for _ in range(per_format):
            syntax = names[turn % len(names)]
            turn += 1
            tree.add(SYNTAXES[syntax](_key_for(fmt), sample(fmt, rng)), fmt.kind, syntax, True)
    prefixed = [f for f in FORMATS if literal_prefix(f)] or list(FORMATS)
    file_syntaxes = ("netrc", "docker-config", "npmrc", "pypirc")
    for i in range(max(16, len(prefixed) // 4)):
        fmt = prefixed[(i * 5) % len(prefixed)]
        syntax = file_syntaxes[i % len(file_syntaxes)]
        tree.add(FILE_SYNTAXES[syntax](sample(fmt, rng)), fmt.kind, syntax, True)
    for i in range(24):
        shape = list(PASSWORD_KEYS)[i % len(PASSWORD_KEYS)]
        value = _password(rng, shape)
        if i % 4 == 3 and shape in ("mixed", "letters", "digits"):
            safe = value.replace("@", "A").replace("/", "B").replace(":", "C").replace("#", "D").replace("?", "E")
            tree.add(_url(safe), "url-password", "url", True)
        else:
            syntax = names[(i * 7) % len(names)]
            tree.add(SYNTAXES[syntax](PASSWORD_KEYS[shape], value), f"password-{shape}", syntax, True)
    return tree.files


def _b64(rng: random.Random, n: int, urlsafe: bool = False) -> str:
    raw = rng.randbytes(n)
    return (base64.urlsafe_b64encode(raw).rstrip(b"=") if urlsafe else base64.b64encode(raw)).decode()


def _hex(rng: random.Random, n: int) -> str:
    return rng.randbytes(n).hex()


def _pem(label: str, body: bytes) -> list[str]:
    text = base64.b64encode(body).decode()
    return [f"-----BEGIN {label}-----", *(text[i:i + 64] for i in range(0, len(text), 64)), f"-----END {label}-----"]


def _der_like(rng: random.Random, n: int) -> bytes:
    # Shaped like DER (a SEQUENCE header) but random inside: public material's look, no real key or certificate.
    return b"\x30\x82" + n.to_bytes(2, "big") + rng.randbytes(n)


def near_misses(rng: random.Random) -> list[CorpusFile]:
    """Lookalikes that are not credentials: one per file, each under a credential-sounding key where it can be."""
    tree = _Tree("near")
    names = list(SYNTAXES)
    turn = 0

    def put(key: str, value: str, kind: str) -> None:
        nonlocal turn
        syntax = names[turn % len(names)]
        turn += 1
        tree.add(SYNTAXES[syntax](key, value), kind, syntax, False)

    prefixed = [f for f in FORMATS if literal_prefix(f)]
    for fmt in prefixed:
        token = sample(fmt, rng)
        prefix = literal_prefix(fmt)
        body_len = len(token) - len(prefix)
        put(_key_for(fmt), prefix + "x" * body_len, "placeholder-x")
        if body_len >= 12:  # shown shortened, as in a UI or a log line: no longer a usable token
            put(_key_for(fmt), token[: len(prefix) + 4] + "...", "truncated")
    for value, kind in (("<your-token>", "placeholder-angle"), ("<GITHUB_TOKEN>", "placeholder-angle"),
                        ("${TOKEN}", "env-reference"), ("${DB_PASSWORD}", "env-reference"),
                        ("{{ .password }}", "template"), ("{{ .Values.apiToken }}", "template"),
                        ("changeme", "placeholder-word"), ("your-api-key-here", "placeholder-word"),
                        ("REDACTED", "placeholder-word"), ("********", "placeholder-mask")):
        for key in ("api_token", "password"):
            put(key, value, kind)
    for _ in range(6):
        put("request_id", str(uuid.UUID(bytes=rng.randbytes(16), version=4)), "uuid")
        put("revision", _hex(rng, 20), "git-sha")
        put("image", f"registry.example.com/billing@sha256:{_hex(rng, 32)}", "image-digest")
        put("checksum", hashlib.sha256(rng.randbytes(32)).hexdigest(), "sha256-checksum")
    for _ in range(4):
        tree.add(("tls.crt", _pem("CERTIFICATE", _der_like(rng, 700)), 1), "certificate", "pem", False)
        tree.add(("key.pub", _pem("PUBLIC KEY", _der_like(rng, 290)), 1), "public-key", "pem", False)
        ed = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + rng.randbytes(32)).decode()
        tree.add(("id_ed25519.pub", [f"ssh-ed25519 {ed} deploy@ci"], 0), "ssh-public-key", "openssh", False)
        salt, digest = _b64(rng, 20), _b64(rng, 20)
        tree.add(("known_hosts", [f"|1|{salt}|{digest} ssh-ed25519 {ed}"], 0), "hashed-known-hosts", "known_hosts",
                 False)
        jwks = {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": _hex(rng, 8),
                          "n": _b64(rng, 256, urlsafe=True), "e": "AQAB"}]}
        tree.add(("jwks.json", json.dumps(jwks, indent=2).splitlines(), 6), "jwks", "json", False)
        sealed = ["apiVersion: bitnami.com/v1alpha1", "kind: SealedSecret", "metadata:", "  name: billing",
                  "  namespace: billing", "spec:", "  encryptedData:",
                  f"    password: AgB{_b64(rng, 360)}", f"    api_token: AgC{_b64(rng, 360)}"]
        tree.add(("sealed-secret.yaml", sealed, 7), "sealed-secret", "yaml", False)
        enc = f"ENC[AES256_GCM,data:{_b64(rng, 24)},iv:{_b64(rng, 32)},tag:{_b64(rng, 16)},type:str]"
        sops = ["apiVersion: v1", "kind: Secret", "metadata:", "  name: billing", "stringData:",
                f"  password: {enc}", "sops:", "  age:", "    - recipient: age1" + "".join(
                    rng.choice("qpzry9x8gf2tvdw0s3jn54khce6mua7l") for _ in range(58)),
                "      enc: |", "        -----BEGIN AGE ENCRYPTED FILE-----",
                f"        {_b64(rng, 48)}", "        -----END AGE ENCRYPTED FILE-----",
                "  lastmodified: '2026-01-01T00:00:00Z'", f"  mac: {enc}", "  version: 3.9.0"]
        tree.add(("secret.enc.yaml", sops, 5), "sops-ciphertext", "yaml", False)
        lock = ["{", '  "name": "billing",', '  "lockfileVersion": 3,', '  "packages": {',
                '    "node_modules/left-pad": {', '      "version": "1.3.0",',
                f'      "integrity": "sha512-{_b64(rng, 64)}"', "    }", "  }", "}"]
        tree.add(("package-lock.json", lock, 6), "lockfile-integrity", "json", False)
    return tree.files


def corpus(seed: int = 15, per_format: int = 3) -> list[CorpusFile]:
    """The whole labelled corpus, deterministic for a seed."""
    rng = random.Random(seed)
    return positives(rng, per_format) + near_misses(rng)


def summary(files: Sequence[CorpusFile]) -> dict[str, int]:
    labels = [label for f in files for label in f.labels]
    return {"files": len(files), "positives": sum(lb.positive for lb in labels),
            "near_misses": sum(not lb.positive for lb in labels),
            "kinds": len({lb.kind for lb in labels if lb.positive})}
