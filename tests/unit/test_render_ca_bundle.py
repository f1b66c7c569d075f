"""An https authority signed by a private CA: the Platform's public caBundle reaches every ESO SecretStore."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chamberlain.checks import run_checks
from chamberlain.intent.loader import load_repository
from chamberlain.render import render_repository
from tests.conftest import CORPUS


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab CA")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_ca_bundle_is_rendered_into_secret_stores(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(CORPUS / "base", root)
    pem = _ca_pem()
    platform_file = root / "platform.yaml"
    docs = list(yaml.safe_load_all(platform_file.read_text()))
    docs[0]["spec"]["authority"]["caBundle"] = pem
    platform_file.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    repo = load_repository(root)
    assert run_checks(repo) == []  # a public CA certificate is not a secret
    tree = render_repository(repo)
    stores = [
        d for path in tree.paths() if path.endswith(".yaml")
        for d in yaml.safe_load_all(tree[path]) if isinstance(d, dict) and d.get("kind") == "SecretStore"
    ]
    assert stores
    for store in stores:
        assert base64.b64decode(store["spec"]["provider"]["vault"]["caBundle"]).decode() == pem
