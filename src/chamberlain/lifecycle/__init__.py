"""The ends of a secret's life that Git declares: decommissioning (``spec.retire``) and ephemeral environment
instances (``preview/<id>``).

Belongs here: the pure decisions (:mod:`.retire` ``next_step``, ``orphans``; :mod:`.ephemeral` instance names and
paths) and the small workflows that apply them through the narrow protocols (``KVLifecycle``, the ledger, the
propagation part of the Kubernetes API). Not here: loading a repository, logging in, or printing (the service
and CLI layers), and generating values (:mod:`chamberlain.provision`, which the service layer calls).
"""
