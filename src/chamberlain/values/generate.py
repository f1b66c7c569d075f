"""Generate initial and rotated values from the intent's generator specs, with the OS CSPRNG (``secrets``).

Keypairs come from ``cryptography``; private keys are PKCS#8 PEM, public keys SubjectPublicKeyInfo PEM (and an
OpenSSH line for ed25519), stored under ``<key>`` and ``<key>.pub``.
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING

from chamberlain.intent.model import (
    AnyGenerator,
    BytesGenerator,
    EcdsaGenerator,
    Ed25519Generator,
    FixedNameGenerator,
    PasswordGenerator,
    RsaGenerator,
    TokenGenerator,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

# Symbols that survive shells, URLs-in-DSNs and YAML without quoting trouble.
SYMBOLS = "-_.~!*+=^"


class GeneratorError(ValueError):
    """A generator spec cannot be satisfied (e.g. min_each larger than the length allows)."""


def password(spec: PasswordGenerator) -> str:
    classes = [
        chars
        for enabled, chars in (
            (spec.lowercase, string.ascii_lowercase),
            (spec.uppercase, string.ascii_uppercase),
            (spec.digits, string.digits),
            (spec.symbols, SYMBOLS),
        )
        if enabled
    ]
    if not classes:
        raise GeneratorError("password generator enables no character class")
    if spec.min_each * len(classes) > spec.length:
        raise GeneratorError("password length is shorter than min_each times the enabled classes")
    alphabet = "".join(classes)
    chars = [secrets.choice(c) for c in classes for _ in range(spec.min_each)]
    chars += [secrets.choice(alphabet) for _ in range(spec.length - len(chars))]
    # Fisher-Yates with the CSPRNG so the guaranteed characters are not at predictable positions.
    for i in range(len(chars) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def token(spec: TokenGenerator) -> str:
    raw = secrets.token_bytes(spec.bytes)
    return raw.hex() if spec.encoding == "hex" else base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def random_bytes(spec: BytesGenerator) -> str:
    raw = secrets.token_bytes(spec.length)
    return raw.hex() if spec.encoding == "hex" else base64.b64encode(raw).decode()


def _pem_pair(private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization

    priv = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    pub = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return priv, pub


def keypair(spec: Ed25519Generator | EcdsaGenerator | RsaGenerator) -> tuple[str, str]:
    """(private PEM, public PEM)."""
    # Imported here: cryptography's native module is about 8 MiB of the controller's resident memory, and most
    # fleets generate passwords and tokens only (P5 in benchmarks/README.md).
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(spec, Ed25519Generator):
        return _pem_pair(ed25519.Ed25519PrivateKey.generate())
    if isinstance(spec, EcdsaGenerator):
        curves: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(),
                                               "P-521": ec.SECP521R1()}
        return _pem_pair(ec.generate_private_key(curves[spec.curve]))
    return _pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=spec.bits))


def values_of(key: str, spec: AnyGenerator) -> dict[str, str]:
    """A fresh value for one key of a ``source.generate`` block: ``{key: value}``, or for a keypair the private
    key under ``key`` and the public key under ``<key>.pub``. A fixed name is its declared value."""
    if isinstance(spec, PasswordGenerator):
        return {key: password(spec)}
    if isinstance(spec, TokenGenerator):
        return {key: token(spec)}
    if isinstance(spec, BytesGenerator):
        return {key: random_bytes(spec)}
    if isinstance(spec, FixedNameGenerator):
        return {key: spec.name}
    private, public = keypair(spec)
    return {key: private, f"{key}.pub": public}


def generate_values(generators: Mapping[str, AnyGenerator]) -> dict[str, str]:
    """Fresh values for every key of a ``source.generate`` block. Keypairs add ``<key>.pub``."""
    values: dict[str, str] = {}
    for key in sorted(generators):
        values.update(values_of(key, generators[key]))
    return values


def rotating_keys(generators: Mapping[str, AnyGenerator]) -> set[str]:
    """Keys whose value changes on rotation (everything but declared fixed names)."""
    return {k for k, g in generators.items() if not isinstance(g, FixedNameGenerator)}
