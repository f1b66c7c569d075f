"""Backups and the checks a restore makes before it touches anything: the bundle round trip, a tampered, truncated,
replaced or wrongly-keyed backup, a snapshot of another authority, too few custodians. Pure, except
:func:`restore` driven against stand-ins for the servers (fakes, said so) that fail the test on any call that
would change something. The real round trip is tests/lab/test_drill_authority_loss.py."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pyrage
import pytest

from chamberlain.authority import backup as bk
from chamberlain.authority.material import SealedMaterial, ShareCustody
from chamberlain.clock import FakeClock
from chamberlain.service import backup as service
from chamberlain.service.context import Caller

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme"
IDS = {n: pyrage.x25519.Identity.generate() for n in ("alice", "bob", "carol", "mallory")}
CLUSTER = "116d31be-c3a3-3636-4e86-44d22c9807b6"


def raft_snapshot(index: int = 40, state: bytes = b"barrier-encrypted storage") -> bytes:
    """A raft snapshot as OpenBao streams it: gzip'ed tar of meta.json, state.bin and their SHA256SUMS."""
    meta = json.dumps({"Version": 1, "ID": "bolt-snapshot", "Index": index, "Term": 3,
                       "Configuration": {"Servers": [{"ID": "lab-1", "Address": "127.0.0.1:8201"}]},
                       "Size": len(state)}).encode()
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in (("meta.json", meta), ("state.bin", state)))
    buf = io.BytesIO()
    # mtime 0: the same snapshot is the same bytes whenever it is made (a gzip header holds the time of day, so two
    # calls a second apart differed and the round trip failed now and then)
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in (("meta.json", meta), ("state.bin", state), ("SHA256SUMS", sums.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def custody() -> ShareCustody:
    return ShareCustody(("age1unused",), tuple((n, str(IDS[n].to_public())) for n in ("alice", "bob", "carol")), 2)


def material() -> SealedMaterial:
    c = custody()
    return SealedMaterial(c.seal(["k1", "k2", "k3"]), 2, c.fingerprint, generation=2, vault_address="https://v:8200",
                          holders=c.holders, init_recorded=True, root_revoked_at="2026-01-01T00:00:00Z")


def write(out: Path, snapshot: bytes | None = None) -> bk.Manifest:
    recipients = [str(IDS[n].to_public()) for n in ("alice", "bob", "carol")]
    who = bk.AuthorityIdentity("https://v:8200", CLUSTER, "vault-cluster-x", "2.7.2", "openbao")
    return bk.write_bundle(out, snapshot or raft_snapshot(), material(), recipients, who,
                           {"dev/dev1": bk.LedgerHead(7, "a" * 64)}, created_at="2026-01-02T00:00:00Z")


def test_round_trip(tmp_path: Path) -> None:
    m = write(tmp_path / "b")
    opened = bk.open_bundle(tmp_path / "b", [IDS["bob"]])
    assert opened.snapshot == raft_snapshot()
    assert opened.manifest == m == bk.read_manifest(tmp_path / "b")
    assert (m.authority.raft_nodes, m.authority.raft_index) == (("lab-1",), 40)
    assert opened.material.open_held([IDS["carol"]]) == [(2, "k3")]
    text = "".join(p.read_bytes().decode("latin-1") for p in (tmp_path / "b").iterdir())
    assert "barrier-encrypted" not in text  # the snapshot is never in clear
    assert oct((tmp_path / "b" / bk.SNAPSHOT).stat().st_mode & 0o777) == "0o600"


def test_a_backup_is_never_written_over(tmp_path: Path) -> None:
    write(tmp_path / "b")
    with pytest.raises(Exception, match="already holds a backup"):
        write(tmp_path / "b")


def test_a_partial_stream_is_never_written(tmp_path: Path) -> None:
    with pytest.raises(bk.BackupIntegrityError, match="not a complete raft snapshot"):
        write(tmp_path / "b", raft_snapshot()[:-40])
    assert not (tmp_path / "b").exists()


def _flip(path: Path, at: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _replace_snapshot(d: Path) -> None:
    """An attacker who rewrites the file *and* its manifest entry: the plaintext digest still gives it away."""
    other = pyrage.encrypt(raft_snapshot(index=41), [IDS["alice"].to_public()])
    (d / bk.SNAPSHOT).write_bytes(other)
    manifest = json.loads((d / bk.MANIFEST).read_text())
    manifest["files"][bk.SNAPSHOT] = {"sha256": hashlib.sha256(other).hexdigest(), "bytes": len(other)}
    (d / bk.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(("damage", "identity", "match"), [
    pytest.param(lambda d: _flip(d / bk.SNAPSHOT), "bob", r"snapshot\.age: its sha256 does not match", id="tampered"),
    pytest.param(lambda d: (d / bk.SNAPSHOT).write_bytes((d / bk.SNAPSHOT).read_bytes()[:100]), "bob",
                 r"snapshot\.age: 100 bytes, the manifest says", id="truncated"),
    pytest.param(lambda d: (d / bk.SHARES).unlink(), "bob", r"unseal-shares\.yaml: missing", id="shares-missing"),
    pytest.param(lambda d: (d / bk.MANIFEST).write_text("{\"kind\""), "bob", r"manifest\.json: not valid JSON",
                 id="manifest-truncated"),
    pytest.param(lambda d: None, "mallory", r"snapshot\.age: the identities given cannot decrypt", id="wrong-identity"),
    pytest.param(_replace_snapshot, "alice", r"decrypted snapshot's sha256 does not match", id="replaced"),
])
def test_a_damaged_backup_is_refused_naming_the_file(tmp_path: Path, damage: Any, identity: str, match: str) -> None:
    write(tmp_path / "b")
    damage(tmp_path / "b")
    with pytest.raises(bk.BackupIntegrityError, match=match):
        bk.open_bundle(tmp_path / "b", [IDS[identity]])


def _manifest(tmp_path: Path) -> bk.Manifest:
    return write(tmp_path / "b")


@pytest.mark.parametrize(("target", "force", "refused"), [
    pytest.param(bk.Target("https://v", True, False, CLUSTER), False, None, id="same-authority"),
    pytest.param(bk.Target("https://v", True, False, "other"), False, "refusing to overwrite another authority",
                 id="other-authority"),
    pytest.param(bk.Target("https://v", True, False, "other"), True, None, id="other-authority-forced"),
    pytest.param(bk.Target("https://v", False, True), False, "new and empty", id="empty-needs-force"),
    pytest.param(bk.Target("https://v", False, True), True, None, id="empty-forced"),
    pytest.param(bk.Target("https://v", True, True), True, "is sealed", id="sealed-never"),
])
def test_refusal(tmp_path: Path, target: bk.Target, force: bool, refused: str | None) -> None:
    why = bk.refusal(_manifest(tmp_path), target, force=force)
    assert (why is None) if refused is None else (refused in (why or ""))


def test_ledger_continuity() -> None:
    expected = {"dev/dev1": bk.LedgerHead(7, "a" * 64), "_authority/configurator": bk.LedgerHead(3, "b" * 64)}
    assert bk.ledger_problems(expected, {"dev/dev1": bk.LedgerHead(7, "a" * 64),
                                         "_authority/configurator": bk.LedgerHead(3, "b" * 64)}) == []
    problems = bk.ledger_problems(expected, {"dev/dev1": bk.LedgerHead(7, "c" * 64)})
    assert problems == ["_authority/configurator: no entry 3 after the restore",
                        "dev/dev1: entry 7 differs from the one the backup recorded"]


# ------------------------------------------------------------------------------------- restore, nothing touched


class _Untouchable:
    """A stand-in for every server (a fake): any attribute not listed is a test failure."""

    def __init__(self, allowed: dict[str, Any] | None = None) -> None:
        self._allowed = allowed or {}

    def __getattr__(self, name: str) -> Any:
        if name in self._allowed:
            return self._allowed[name]
        raise AssertionError(f"restore touched {name} before its checks passed")


class _Health:
    def __init__(self, initialized: bool, sealed: bool, cluster_id: str) -> None:
        self.initialized, self.sealed, self.cluster_id = initialized, sealed, cluster_id


def _servers(cluster_id: str = "another", initialized: bool = True) -> Any:
    seal = _Untouchable({"health": lambda: _Health(initialized, False, cluster_id)})
    vault = _Untouchable({"seal": seal, "address": "https://v:8200"})
    return _Untouchable({"anonymous": lambda _p: vault})


def _request(tmp_path: Path, *identities: str, force: bool = False) -> service.RestoreRequest:
    repo = tmp_path / "repo"
    if not repo.exists():
        shutil.copytree(EXAMPLE, repo)
    files = []
    for n in identities:
        f = tmp_path / f"{n}.agekey"
        f.write_text(str(IDS[n]) + "\n")
        files.append(f)
    return service.RestoreRequest(repo, tmp_path / "b", tuple(files), force=force)


def _caller() -> Caller:
    return Caller("test", FakeClock())


@pytest.mark.parametrize(("damage", "identities", "match"), [
    pytest.param(lambda d: _flip(d / bk.SNAPSHOT), ("alice", "bob"), "sha256 does not match", id="tampered"),
    pytest.param(lambda d: (d / bk.SNAPSHOT).write_bytes(b"x"), ("alice", "bob"), "1 bytes", id="truncated"),
    pytest.param(lambda d: None, ("mallory",), "cannot decrypt", id="wrong-identity"),
    pytest.param(lambda d: None, ("alice",), "open 1 of the 2 unseal shares", id="one-custodian-of-two"),
])
def test_restore_refuses_a_bad_backup_before_reaching_any_server(tmp_path: Path, damage: Any,
                                                                  identities: tuple[str, ...], match: str) -> None:
    write(tmp_path / "b")
    damage(tmp_path / "b")
    with pytest.raises(bk.BackupIntegrityError, match=match) as caught:
        service.restore(_request(tmp_path, *identities), _Untouchable(), _caller())
    assert caught.value.exit_code == 1
    assert "k1" not in str(caught.value) and "AGE-SECRET-KEY" not in str(caught.value)


def test_restore_refuses_another_authority_after_reading_only_its_health(tmp_path: Path) -> None:
    write(tmp_path / "b")
    with pytest.raises(bk.RestoreRefused, match=r"refusing to overwrite another authority.*Nothing was changed"):
        service.restore(_request(tmp_path, "alice", "bob"), _servers("another"), _caller())


def test_restore_onto_an_empty_authority_takes_force(tmp_path: Path) -> None:
    write(tmp_path / "b")
    with pytest.raises(bk.RestoreRefused, match="pass --force"):
        service.restore(_request(tmp_path, "alice", "bob"), _servers("", initialized=False), _caller())
