"""The lab's GitOps stand-in: what Argo CD + KSOPS (or Flux with SOPS decryption) would do with rendered output.

NOT a GitOps controller and never meant to replace one (SPEC §4: the GitOps controller is the sole deployment
authority; chamberlain renders for it). ``chamberlain apply`` exists so the lab, which runs a bare kube-apiserver,
can go from Git to a cluster the way production does: render in memory, apply CRDs and wait for them, then
server-side-apply each application in sync-wave order, decrypting bootstrap Secrets in memory with the in-cluster
age identity exactly where KSOPS would.

Belongs here: a tiny kustomize reader for chamberlain's own rendered layout (:mod:`.build`, pure) and the apply
sequence (:mod:`.standin`). Talks to Kubernetes only through :class:`chamberlain.kube.api.KubeApply`.
"""

from chamberlain.gitops.build import App, GitopsError, build_app
from chamberlain.gitops.standin import FIELD_MANAGER, ApplyReport, AppReport, apply_repository

__all__ = ["FIELD_MANAGER", "App", "AppReport", "ApplyReport", "GitopsError", "apply_repository", "build_app"]
