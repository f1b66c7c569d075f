"""The unseal-share export file: round trip, refusal of anything that is not a sealed share, and validate's rules
CH108-CH111 on a repository that holds it. Pure (age in process; no server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyrage
import pytest

from chamberlain.authority import export
from chamberlain.authority.material import SealedMaterial, ShareCustody
from chamberlain.intent import unseal_shares

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme"
IDS = {n: pyrage.x25519.Identity.generate() for n in ("alice", "bob", "carol", "root")}


def _custody() -> ShareCustody:
    return ShareCustody((str(IDS["root"].to_public()),),
                        tuple((n, str(IDS[n].to_public())) for n in ("alice", "bob", "carol")), 2)


def _material(custody: ShareCustody | None = None) -> SealedMaterial:
    c = custody or _custody()
    keys = ["share-one", "share-two", "share-three"]
    return SealedMaterial(c.seal(keys), 2, c.fingerprint, initialized_at="2026-01-01T00:00:00Z",
                          root_revoked_at="2026-01-01T00:01:00Z", generation=3, init_recorded=True,
                          vault_address="https://127.0.0.1:8200", holders=c.holders)


def test_round_trip_keeps_every_field_and_each_share_opens_for_its_custodian_only(tmp_path: Path) -> None:
    m = _material()
    path = tmp_path / "authority" / "unseal-shares.yaml"
    assert export.write_export(path, m)
    assert not export.write_export(path, m), "unchanged material is not rewritten"
    text = path.read_text()
    assert "share-one" not in text and "BEGIN AGE ENCRYPTED FILE" in text
    back = export.read_export(path)
    assert export.same_shares(back, m)
    assert (back.holders, back.threshold, back.recipients, back.vault_address, back.root_revoked_at,
            back.init_recorded, back.generation) == (m.holders, 2, m.recipients, m.vault_address,
                                                     m.root_revoked_at, True, 3)
    assert back.open_held([IDS["bob"]]) == [(1, "share-two")]


def test_root_sealed_material_has_no_custodians() -> None:
    c = ShareCustody((str(IDS["root"].to_public()),))
    m = SealedMaterial(c.seal(["a", "b"]), 2, c.fingerprint, vault_address="https://v:8200")
    back = export.parse_export(export.export_material(m))
    assert back.holders == () and back.open([IDS["root"]]) == ["a", "b"]


def test_pending_rekey_shares_are_never_exported() -> None:
    m = _material()
    pending = SealedMaterial(m.shares, 2, m.recipients, holders=m.holders, next_shares=("x",), next_threshold=2)
    doc = export.export_document(pending)
    assert len(doc["spec"]["shares"]) == 3 and "next" not in str(doc["spec"].keys())


def test_nothing_to_export_before_init() -> None:
    with pytest.raises(export.ExportError, match="no sealed unseal shares"):
        export.export_material(SealedMaterial((), 0, "", pending=True))


@pytest.mark.parametrize(("edit", "rule"), [
    pytest.param(lambda t: t.replace("-----BEGIN AGE ENCRYPTED FILE-----", "plain", 1), "CH108", id="plaintext"),
    pytest.param(lambda t: t.replace("threshold: 2", "threshold: 9"), "CH109", id="threshold-above-shares"),
    pytest.param(lambda t: t.replace("holder: bob", "holder: alice"), "CH109", id="duplicate-holder"),
    pytest.param(lambda t: t.replace("kind: UnsealShares", "kind: Other"), "CH109", id="wrong-kind"),
])
def test_refused_with_the_rule_and_no_share_quoted(edit: object, rule: str) -> None:
    text = edit(export.export_material(_material()))  # type: ignore[operator]
    with pytest.raises(export.ExportError, match=rule) as caught:
        export.parse_export(text, "repo/authority/unseal-shares.yaml")
    assert "repo/authority/unseal-shares.yaml" in str(caught.value)
    assert "AGE" not in str(caught.value).replace("AGE ENCRYPTED", "")


def test_a_custodian_share_sealed_to_two_recipients_is_an_extra_reader() -> None:
    m = _material()
    two = pyrage.encrypt(b"share-one", [IDS["alice"].to_public(), IDS["root"].to_public()], armored=True).decode()
    bad = SealedMaterial((two, *m.shares[1:]), 2, m.recipients, holders=m.holders, vault_address="x")
    found = unseal_shares.problems(export.export_document(bad))
    assert [p.rule for p in found] == ["CH110"]


def test_missing_file_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(export.ExportError, match="export-shares"):
        export.read_export(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------------------ validate


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "acme"
    shutil.copytree(EXAMPLE, root)
    return root


def _findings(root: Path) -> list[tuple[str, str]]:
    from chamberlain.checks.registry import run_checks
    from chamberlain.intent.loader import load_repository

    return [(f.rule, f.file) for f in run_checks(load_repository(root))]


def _platform_custody(root: Path) -> ShareCustody:
    from chamberlain.intent.loader import load_repository
    from chamberlain.service.authority import share_custody

    platform = load_repository(root).platform
    assert platform is not None
    return share_custody(platform)


def test_validate_accepts_a_repository_with_the_export(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    before = _findings(root)
    custody = _platform_custody(root)
    m = SealedMaterial(custody.seal(["a"] * max(len(custody.custodians), 1)), max(custody.threshold, 1),
                       custody.fingerprint, vault_address="https://v:8200", holders=custody.holders)
    export.write_export(export.default_path(root), m)
    assert _findings(root) == before


def test_validate_flags_plaintext_and_stale_exports(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    before = set(_findings(root))
    text = export.export_material(_material())  # sealed to a custody the Platform does not declare
    path = export.default_path(root)
    path.parent.mkdir(parents=True)
    path.write_text(text.replace("-----BEGIN AGE ENCRYPTED FILE-----", "x", 1))
    new = set(_findings(root)) - before
    # the credential scanners see the broken armour too (CH020/CH024); the export's own rules say what it is
    assert {("CH108", unseal_shares.DEFAULT_PATH), ("CH111", unseal_shares.DEFAULT_PATH)} <= new


# ------------------------------------------------------------------------------------------------ lifecycle


def test_a_lost_secret_is_replaced_by_the_export_and_unseals_a_restarted_server(tmp_path: Path) -> None:
    """With the fake server and cluster of test_authority_lifecycle (fakes): init, export, lose the Secret and
    restart the server; the export alone unseals it."""
    from chamberlain.authority import lifecycle
    from tests.unit.test_authority_lifecycle import NS, World, _identities

    world = World(tmp_path)
    world.init()
    stored = world.store().load()
    assert stored is not None
    text = export.export_material(stored)
    world.kube.secrets.pop((NS, "chamberlain-unseal"))
    world.vault.restart()
    report = lifecycle.unseal_from(world.vault, export.parse_export(text), "export", _identities())  # type: ignore[arg-type]
    assert report.was_sealed and not world.vault.sealed


def test_regenerated_values_are_the_ones_whose_marker_or_version_moved() -> None:
    from chamberlain.drill.authority_loss import regenerated

    before = {"secret/a": ("m1", 1), "secret/b": ("m2", 3), "secret/c": ("m3", 1)}
    assert regenerated(before, dict(before)) == []
    assert regenerated(before, {"secret/a": ("m1", 1), "secret/b": ("m9", 4)}) == ["secret/b", "secret/c"]


def test_an_export_of_another_shape_is_refused_before_any_share_is_submitted(tmp_path: Path) -> None:
    """An export of another authority (or from before a rekey) would submit wrong shares: refused, with why (fakes)."""
    import dataclasses

    from chamberlain.authority import lifecycle
    from chamberlain.authority.material import SealError
    from tests.unit.test_authority_lifecycle import World, _identities

    world = World(tmp_path)
    world.init()
    stored = world.store().load()
    assert stored is not None
    world.vault.restart()
    other = dataclasses.replace(stored, shares=stored.shares[:-1])  # n-1 shares: not this authority's k of n
    with pytest.raises(SealError, match="another authority, or from before a rekey"):
        lifecycle.unseal_from(world.vault, other, "authority/unseal-shares.yaml", _identities())  # type: ignore[arg-type]
    status = world.vault.seal.status()
    assert status.sealed and status.progress == 0
