"""The decryption layer in the rendered output: encrypted files copied byte for byte, KSOPS generator, Flux."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from chamberlain import wellknown as wk
from chamberlain.intent.loader import load_repository
from chamberlain.render import naming, render_repository
from chamberlain.render.bootstrap import assign, collect
from chamberlain.render.topology import build_topology
from tests.conftest import EXAMPLES

ACME = EXAMPLES / "acme"


def test_encrypted_files_are_copied_byte_for_byte_into_each_cluster() -> None:
    tree = render_repository(load_repository(ACME))
    source = (ACME / "bootstrap" / "smtp-relay.sops.yaml").read_text()
    for app in ("envs/dev/dev1", "envs/prod/prod-eu1", "envs/prod/prod-us1"):
        assert tree[f"{app}/bootstrap/smtp-relay.sops.yaml"] == source
        pull = (ACME / "bootstrap" / "registry-pull.sops.yaml").read_text()
        assert tree[f"{app}/bootstrap/registry-pull.sops.yaml"] == pull
    # the ephemeral environment on dev1 never carries a second copy of dev1's Secrets
    assert not any(p.startswith("envs/preview/dev1/bootstrap") for p in tree.paths())
    assert "generators" not in yaml.safe_load(tree["envs/preview/dev1/kustomization.yaml"])


def test_ksops_generator_is_listed_by_the_application() -> None:
    tree = render_repository(load_repository(ACME))
    kust = yaml.safe_load(tree["envs/dev/dev1/kustomization.yaml"])
    assert kust["generators"] == ["ksops-bootstrap.yaml"]
    gen = yaml.safe_load(tree["envs/dev/dev1/ksops-bootstrap.yaml"])
    assert (gen["apiVersion"], gen["kind"]) == ("viaduct.ai/v1", "ksops")
    assert gen["files"] == ["./bootstrap/registry-pull.sops.yaml", "./bootstrap/smtp-relay.sops.yaml"]
    assert "exec" in gen["metadata"]["annotations"]["config.kubernetes.io/function"]
    (patch,) = kust["patches"]
    assert patch["target"] == {"kind": "Secret", "labelSelector": "chamberlain.dev/class=bootstrap"}
    assert yaml.safe_load(patch["patch"])["metadata"]["annotations"][wk.ARGOCD_SYNC_WAVE] == str(naming.WAVE_IDENTITY)
    flux_res = yaml.safe_load(tree["envs/dev/dev1/bootstrap/kustomization.yaml"])["resources"]
    assert flux_res == ["registry-pull.sops.yaml", "smtp-relay.sops.yaml"]


def test_flux_kustomization_decrypts_with_sops_age() -> None:
    tree = render_repository(load_repository(ACME))
    docs = [d for d in yaml.safe_load_all(tree["flux/prod-eu1/prod.yaml"]) if d]
    (flux,) = [d for d in docs if d["metadata"]["name"] == "chamberlain-bootstrap-prod"]
    assert flux["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1" and flux["kind"] == "Kustomization"
    assert flux["spec"]["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}
    assert flux["spec"]["path"] == "./envs/prod/prod-eu1/bootstrap"
    assert flux["spec"]["prune"] is False
    # the ephemeral preview environment on dev1 carries no bootstrap files: no bootstrap Kustomization
    preview = [d["metadata"]["name"] for d in yaml.safe_load_all(tree["flux/dev1/preview.yaml"]) if d]
    assert preview == ["chamberlain-env-preview"]


def test_the_secrets_namespace_is_created_in_wave_zero_labelled_bootstrap() -> None:
    tree = render_repository(load_repository(ACME))
    namespaces = {d["metadata"]["name"]: d for d in yaml.safe_load_all(tree["clusters/dev1/namespaces.yaml"]) if d}
    ns = namespaces["chamberlain-bootstrap"]
    assert ns["metadata"]["labels"]["chamberlain.dev/class"] == "bootstrap"
    assert ns["metadata"]["annotations"][wk.ARGOCD_SYNC_WAVE] == "0"
    assert "chamberlain.dev/class" not in namespaces["payments"]["metadata"]["labels"]


def test_render_is_deterministic_and_without_bootstrap_intents_unchanged(tmp_path: Path) -> None:
    first = render_repository(load_repository(ACME)).files
    assert render_repository(load_repository(ACME)).files == first
    repo = tmp_path / "acme"
    shutil.copytree(ACME, repo)
    (repo / "intents" / "platform.yaml").write_text(
        (ACME / "intents" / "platform.yaml").read_text().split("---\n")[-1])  # keep only the runtime intent
    for f in ("smtp-relay", "registry-pull"):
        (repo / "bootstrap" / f"{f}.sops.yaml").unlink()
    tree = render_repository(load_repository(repo))
    assert not any("bootstrap" in p for p in tree.paths())
    flux = "".join(text for p, text in tree.files.items() if p.startswith("flux/"))
    assert "decryption" not in flux and "chamberlain-bootstrap" not in flux


def test_an_intent_on_two_environments_of_one_cluster_is_carried_once() -> None:
    repo = load_repository(ACME)
    platform = repo.platform
    assert platform is not None
    intents = [i.obj for i in repo.intents]
    smtp = next(i for i in intents if i.name == "smtp-relay")
    both = smtp.model_copy(update={"spec": smtp.spec.model_copy(update={"environments": ["preview", "dev"]})})
    topo = build_topology(platform, [p.obj for p in repo.policies], [both])
    layer = assign(topo, [f for f in collect(repo) if f.intent == "smtp-relay"])
    assert [f.intent for f in layer.files_of("dev", "dev1")] == ["smtp-relay"]  # dev owns dev1's cluster objects
    assert layer.files_of("preview", "dev1") == []
    assert layer.namespaces("dev1") == {"chamberlain-bootstrap"}
    only_preview = smtp.model_copy(update={"spec": smtp.spec.model_copy(update={"environments": ["preview"]})})
    layer = assign(build_topology(platform, [], [only_preview]), [f for f in collect(repo) if f.intent == "smtp-relay"])
    assert [f.intent for f in layer.files_of("preview", "dev1")] == ["smtp-relay"]
