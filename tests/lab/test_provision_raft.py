"""Cold provisioning in parallel against a real OpenBao with raft storage over TLS (issue 16, P2), at the
benchmark's smoke size: the benchmark starts its own server (only the authority, no lab), provisions through
``run_provision`` with 8 workers and a signed ledger book, re-runs it, and measures the raw floor. Asserted here:
the behaviour (every secret created once, the chain verifies, the no-op run writes nothing, the request budget),
never the timings."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chamberlain.audit.keys import PinnedKeys
from chamberlain.audit.ledger import Ledger, LedgerReader, Partition, TransitSigner, make_draft
from chamberlain.authority.errors import AuthorityUnavailable, NotFound
from chamberlain.authority.vault import client_with_token
from chamberlain.clock import SystemClock
from chamberlain.intent.paths import TRANSIT_MOUNT, ledger_key
from tests.conftest import run_benchmark

pytestmark = [pytest.mark.lab, pytest.mark.own_lab]  # own servers: run beside the shared lab


@pytest.mark.timeout(120)
def test_parallel_provisioning_on_raft_over_tls_at_the_smoke_size() -> None:
    report = json.loads(run_benchmark("bench_provision.py", "--smoke", "--port-offset", "-5698", "-o", "json",
                                      timeout=110))
    [row] = report["rows"]
    assert row["n"] == 20 and row["ledger_verified"] is True
    assert row["noop_writes"] == 0 and row["noop_requests"] == {"read": 20}, "one metadata read per secret"
    # Per secret: a metadata read (20 secrets in 10 folders: too few per folder for a listing), the value, its
    # marker, two metadata PATCHes, the entry; per group commit (up to the workers in flight): a signature, a head
    # write, and the one head read of the run.
    assert row["requests"]["write"] >= 4 * 20 and row["requests_per_secret"] <= 7.0, row["requests"]
    figures = {f["id"]: f for f in report["figures"]}
    assert set(figures) == {"P2", "P2-noop", "P2-requests"} and figures["P2-noop"]["met"] is True
    assert figures["P2"]["met"] is None, "no goal at the smoke size"


@pytest.fixture(scope="module")
def raft() -> Iterator[Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from _raft_bao import raft_bao  # type: ignore[import-not-found]

    with raft_bao(-5696) as bao:
        c = bao.hvac()
        c.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        c.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
        c.secrets.transit.create_key(name=ledger_key("dev"), key_type="ed25519", mount_point=TRANSIT_MOUNT)
        yield bao


def _kv_ready(kv: Any) -> None:
    deadline = time.monotonic() + 20
    while True:  # a new KV v2 mount answers "upgrading" for a moment
        try:
            kv.read_metadata("secret", "probe")
            return
        except AuthorityUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.timeout(60)
def test_metadata_patch_merges_and_falls_back_without_the_capability(raft: Any) -> None:
    root = client_with_token(raft.address, raft.ca_file, raft.root_token, clock=SystemClock())
    _kv_ready(root.kv)
    root.kv.write("secret", "dev/a", {"v": "x"}, cas=0)
    raft.hvac().secrets.kv.v2.update_metadata(path="dev/a", mount_point="secret",  # as ESO's PushSecret marks it
                                              custom_metadata={"managed-by": "external-secrets", "keep": "1"})
    root.kv.patch_custom_metadata("secret", "dev/a", {"authority": "vault"},
                                  known={"managed-by": "external-secrets", "keep": "1"})
    meta = root.kv.read_metadata("secret", "dev/a")
    assert meta is not None and dict(meta.custom) == {"managed-by": "external-secrets", "keep": "1",
                                                      "authority": "vault"}
    with pytest.raises(NotFound):
        root.kv.patch_custom_metadata("secret", "dev/absent", {"authority": "vault"}, known={})
    # A hand-written policy without "patch": the write goes through as a read and a write back.
    h = raft.hvac()
    h.sys.create_or_update_policy("no-patch", 'path "secret/*" { capabilities = ["create", "read", "update"] }')
    token = h.auth.token.create(policies=["no-patch"], ttl="10m")["auth"]["client_token"]
    limited = client_with_token(raft.address, raft.ca_file, token, clock=SystemClock())
    limited.kv.patch_custom_metadata("secret", "dev/a", {"origin": "generated"}, known=meta.custom)
    limited.kv.patch_custom_metadata("secret", "dev/a", {"intent": "a"}, known=meta.custom)
    after = root.kv.read_metadata("secret", "dev/a")
    assert after is not None and after.custom["origin"] == "generated" and after.custom["intent"] == "a"
    assert after.custom["managed-by"] == "external-secrets"


@pytest.mark.timeout(60)
def test_a_group_is_signed_in_one_request_and_verifies(raft: Any) -> None:
    client = client_with_token(raft.address, raft.ca_file, raft.root_token, clock=SystemClock())
    _kv_ready(client.kv)
    ledger = Ledger(client.kv, "secret", SystemClock(), partition=Partition("dev", "c1"),
                    signer=TransitSigner(client.transit))
    entries = ledger.append_many([make_draft("value-created", actor="t", secret=f"s{i}") for i in range(5)])
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5] and all(e.sig.startswith("vault:v1:") for e in entries)
    keys = PinnedKeys.from_transit({ledger_key("dev"): client.transit.public_keys(TRANSIT_MOUNT, ledger_key("dev"))})
    report = LedgerReader(client.kv, "secret").verify(keys)
    assert report.ok and report.entries == 5, report.problems


@pytest.mark.timeout(60)
@pytest.mark.parametrize("listing", [True, False])
def test_a_folder_is_listed_under_a_scoped_policy_and_read_per_secret_without_list(raft: Any, listing: bool) -> None:
    """The orchestrator's rendered policy grants ``list`` on its environment's metadata: a cold run lists each
    folder once instead of reading every secret's metadata. A hand-written policy without ``list`` is refused the
    listing, and the run reads per secret as before; both create every secret once."""
    from chamberlain.authority.counting import CountingKV
    from chamberlain.intent.model import PasswordGenerator
    from chamberlain.intent.paths import VaultPath
    from chamberlain.provision import ProvisionUnit, run_provision

    root = client_with_token(raft.address, raft.ca_file, raft.root_token, clock=SystemClock())
    _kv_ready(root.kv)
    folder = f"dev/scoped-{listing}"
    root.kv.write("secret", f"{folder}/s2", {"password": "there-before"}, cas=0)  # found, adopted
    h = raft.hvac()
    metadata = '["create", "read", "update", "patch", "delete"' + (', "list"]' if listing else "]")
    h.sys.create_or_update_policy(f"provision-{listing}", (
        f'path "secret/data/dev/*" {{ capabilities = ["create", "read", "update"] }}\n'
        f'path "secret/metadata/dev/*" {{ capabilities = {metadata} }}\n'
        'path "secret/data/_chamberlain/ledger/*" { capabilities = ["create", "read", "update"] }\n'
        'path "secret/metadata/_chamberlain/ledger/*" { capabilities = ["read", "list"] }\n'))
    token = h.auth.token.create(policies=[f"provision-{listing}"], ttl="10m")["auth"]["client_token"]
    scoped = client_with_token(raft.address, raft.ca_file, token, clock=SystemClock())
    kv = CountingKV(scoped.kv)
    units = [ProvisionUnit(f"s{i}", "dev", VaultPath("secret", f"{folder}/s{i}"),
                           {"password": PasswordGenerator(type="password", length=16)}, None, None) for i in range(6)]
    ledger = Ledger(kv, "secret", SystemClock(), partition=Partition("dev", f"scoped-{listing}"))
    outcomes = run_provision(units, kv, ledger, actor="t", run="r", clock=SystemClock(), workers=3)
    assert [o.result for o in outcomes] == ["created", "created", "exists", "created", "created", "created"]
    assert kv.counts["list"] == 1
    assert kv.counts["read_metadata"] == (1 if listing else 6), kv.counts
    current = root.kv.read("secret", f"{folder}/s2")
    assert current is not None and dict(current.data) == {"password": "there-before"}
