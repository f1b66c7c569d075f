"""Property: a repository that validates without errors renders (SPEC §10: validate-before-render).

Anything render would refuse must already be a validate error with a rule id, so CI that runs ``validate`` never
meets a surprise at ``render``. Hypothesis builds repositories (Platform, policies, intents) from varied and often
colliding fields: shared names, reserved keys, PKI annotations, overlapping consumers, admin references,
environments the Platform may not have. Whenever validate reports no error, render into a temporary directory must
not raise.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chamberlain import wellknown as wk
from chamberlain.checks import run_checks
from chamberlain.findings import blocking
from chamberlain.intent.loader import load_repository
from chamberlain.render import render_repository, write_tree

ROOT_RECIPIENT = "age1alv9cmp24g55wasnmzrfm3rspphz5u8ay6e5ujdujr99yf27xyssrczjjk"
GITOPS_RECIPIENT = "age1uje6yutxcw4r8qt9yrcm2x98zpljfgvsn7w3e46vfla77w8cmv7qyzkcaz"

# Small alphabets on purpose: collisions (two intents, one Secret; a name reused as a key) are where gaps hide.
name = st.sampled_from(["app", "db", "cache", "api", "orders", "a-b", "x" * 63])
namespace = st.sampled_from(["app", "databases", "reporting", "web", "chamberlain-system"])
# "_chamberlain-custom-metadata" is reserved by render for the version marker.
secret_key = st.sampled_from(["password", "username", "token", "tls.key", "DB_PASSWORD", "host", "port", "a.b-c_d",
                              "user", "api-key", "_chamberlain-custom-metadata"])
env_name = st.sampled_from(["prod", "dev", "staging"])
duration = st.sampled_from(["1h", "7d", "90d", "30m", "1w", "12h"])

generator = st.one_of(
    st.builds(lambda n: {"type": "password", "length": n}, st.integers(8, 64)),
    st.builds(lambda n: {"type": "token", "bytes": n}, st.integers(16, 64)),
    st.just({"type": "ed25519"}),
    st.just({"type": "rsa", "bits": 2048}),
    st.just({"type": "ecdsa", "curve": "P-256"}),
    st.builds(lambda n: {"type": "fixed-name", "name": n}, st.sampled_from(["app", "reader", "svc_user"])),
)

pki_annotations = st.one_of(
    st.just({}),
    st.just({}),
    st.just({wk.ANNOTATION_ROTATOR: "x509-vault-pki", wk.ANNOTATION_X509_PKI_ROLE: "web"}),
    st.fixed_dictionaries({wk.ANNOTATION_ROTATOR: st.sampled_from(["x509-vault-pki", "x509-self-signed", "random"])},
                          optional={
                              wk.ANNOTATION_X509_PKI_ROLE: st.sampled_from(["web", "", "bad role", "a/b"]),
                              wk.ANNOTATION_X509_PKI_MOUNT: st.sampled_from(["pki", "sys", "pki/int", "/x/", "auth"]),
                              wk.ANNOTATION_X509_DNS_NAMES: st.sampled_from(["a.example.com", ""]),
                              wk.ANNOTATION_X509_TTL: st.sampled_from(["24h", "x"]),
                          }),
)

def rarely(draw: st.DrawFn) -> bool:
    """One draw in eight: most fields stay valid so that many repositories reach render."""
    return draw(st.integers(0, 7)) == 0


@st.composite
def rotation(draw: st.DrawFn) -> dict[str, Any] | None:
    if rarely(draw):
        return draw(st.builds(lambda t, b: {"type": "time-based", "ttl": t, "rotateBefore": b}, duration, duration))
    return draw(st.sampled_from([None, {"policy": "standard"}, {"type": "static"}, {"type": "event-based"},
                                 {"type": "time-based", "ttl": "30d", "rotateBefore": "2d"}]))


@st.composite
def consumer(draw: st.DrawFn, intent_name: str, index: int, keys: list[str]) -> dict[str, Any]:
    secret_name = draw(name) if rarely(draw) else f"{intent_name}-{index}"[:253]
    out: dict[str, Any] = {"namespace": draw(namespace), "secretName": secret_name}
    if keys and draw(st.booleans()):
        target = st.sampled_from(keys) if not rarely(draw) else secret_key
        out["keys"] = draw(st.dictionaries(secret_key, target, min_size=1, max_size=3))
    restart = draw(st.lists(st.fixed_dictionaries({"kind": st.sampled_from(["Deployment", "StatefulSet",
                                                                            "DaemonSet"]),
                                                   "name": name}), max_size=2))
    if restart:
        out["restart"] = restart
    return out


@st.composite
def intent(draw: st.DrawFn, intent_name: str, others: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["generate", "publication"]))
    keys: list[str]
    if kind == "generate":
        generate = draw(st.dictionaries(secret_key, generator, min_size=1, max_size=3))
        source: dict[str, Any] = {"generate": generate}
        keys = list(generate)
        classification = "runtime"
    else:
        classification = draw(st.sampled_from(["derived", "config"]))
        pool = ["host", "port"] if classification == "config" else ["username", "password", "host"]
        publication: dict[str, Any] = {"namespace": draw(namespace), "secretName": f"{intent_name}-src"}
        keys = draw(st.lists(st.sampled_from(pool), unique=True, min_size=1, max_size=2))
        publication["keys"] = keys
        source = {"publication": publication}
    if rarely(draw):
        classification = draw(st.sampled_from(["runtime", "derived", "config"]))
    spec: dict[str, Any] = {
        "owner": draw(st.sampled_from(["team-a", "team-b"])),
        "purpose": "generated by the validate-implies-render property",
        "classification": classification,
        "source": source,
        "consumers": [draw(consumer(intent_name, i, keys)) for i in range(draw(st.integers(0, 3)))],
    }
    if draw(st.booleans()):
        spec["environments"] = draw(st.lists(env_name if rarely(draw) else st.sampled_from(["prod", "dev"]),
                                             unique=True, min_size=1, max_size=2))
    rot = draw(rotation())
    if rot is not None:
        spec["rotation"] = rot
    if kind == "generate" and others and draw(st.integers(0, 3)) == 0:
        admin = draw(st.sampled_from(others)) if not rarely(draw) else "nope"
        spec["target"] = {"postgres": {"host": "db.svc", "role": "app", "adminIntent": admin}}
    metadata: dict[str, Any] = {"name": intent_name}
    annotations = draw(pki_annotations)
    if annotations:
        metadata["annotations"] = annotations
    if draw(st.booleans()):
        metadata["labels"] = draw(st.dictionaries(st.sampled_from(["team", "tier", "app.kubernetes.io/part-of"]),
                                                  st.sampled_from(["web", "data", "a b", ""]), max_size=2))
    return {"apiVersion": "chamberlain.dev/v1alpha1", "kind": "SecretIntent", "metadata": metadata, "spec": spec}


@st.composite
def repository(draw: st.DrawFn) -> list[dict[str, Any]]:
    platform_spec: dict[str, Any] = {
        "environments": [{"name": "prod", "clusters": ["prod-eu1"]},
                         {"name": "dev", "clusters": draw(st.sampled_from([["dev1"], ["dev1", "dev2"]]))}],
        "authority": {"address": "https://vault.vault.svc:8200",
                      "mounts": {"runtime": "secret", "internalData": "platform-data",
                                 "internalConfig": "platform-config"}},
        "rootOfTrust": {"ageRecipients": [ROOT_RECIPIENT]},
        "defaults": {"rotationPolicy": "standard"},
    }
    if draw(st.booleans()):
        platform_spec["gitops"] = {"decryptionRecipients": {"dev1": [GITOPS_RECIPIENT]}}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "chamberlain.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "gen"},
         "spec": platform_spec},
        {"apiVersion": "chamberlain.dev/v1alpha1", "kind": "RotationPolicy", "metadata": {"name": "standard"},
         "spec": {"type": "time-based", "ttl": "90d", "rotateBefore": "7d"}},
    ]
    if draw(st.booleans()):
        docs.append({"apiVersion": "chamberlain.dev/v1alpha1", "kind": "RotationPolicy", "metadata": {"name": "fast"},
                     "spec": {"type": "time-based", "ttl": draw(duration) if rarely(draw) else "7d",
                              "rotateBefore": draw(duration) if rarely(draw) else "1h"}})
    names = [f"gen-{n}"[:63] for n in draw(st.lists(name, unique=True, min_size=1, max_size=5))]
    docs += [draw(intent(n, [o for o in names if o != n])) for n in names]
    return docs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(repository())
def test_validate_clean_implies_render_succeeds(docs: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        (root / "repo.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        repo = load_repository(root, git=None)
        errors = blocking(run_checks(repo))
        if errors:
            return
        tree = render_repository(repo)  # must not raise: validate said the repository is good
        write_tree(tree, Path(tmp) / "out")
