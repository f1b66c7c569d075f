"""The lab: real servers on this machine for chamberlain's end-to-end tests and demo.

What belongs here: building the upstream servers from Go modules into a cache outside
the repository (:mod:`.builds`), the per-lab PKI (:mod:`.pki`), starting and stopping
each server on loopback (:mod:`.servers`) and the lab as a whole (:mod:`.lab`:
``up``/``down``/``status``). What does not: anything chamberlain itself does to a
cluster or to the runtime authority; the lab only provides the real parts it runs
against (kube-apiserver + etcd, Vault/OpenBao, External Secrets Operator, PostgreSQL,
sops + age).
"""

from __future__ import annotations

__all__: list[str] = []
