"""Adoption of an existing estate (``chamberlain adopt``): read what a cluster already has, map it to intents, and
plan the moves that bring it under the authority without a window with no owner.

- :mod:`~chamberlain.adopt.estate`: the typed, value-free picture of an estate, and the one function that turns a
  Kubernetes object (a dict) into it. Secret values, ciphertexts and ``last-applied-configuration`` annotations are
  dropped there, so nothing after it can print a value.
- :mod:`~chamberlain.adopt.manifests`, :mod:`~chamberlain.adopt.cluster`, :mod:`~chamberlain.adopt.authority`:
  the readers (a directory, a live cluster through a narrow protocol, the authority's KV metadata). I/O.
- :mod:`~chamberlain.adopt.mapping`: estate -> intents and what cannot be mapped, with the reason. Pure.
- :mod:`~chamberlain.adopt.plan`: the ordered migration steps and their files (migration-plan.yaml,
  MIGRATION.md). Pure.
- :mod:`~chamberlain.adopt.write`: writes the generated repository. I/O.

What does not belong here: importing values (that is ``source.existingSecret``'s mechanism, ``adopt verify``) and
any Kubernetes or Vault client (they stay behind their adapters).
"""
