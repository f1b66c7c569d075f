"""Disaster drills on the lab: destroy something on purpose, recover it with the commands a user runs, and prove
nothing was lost and no value was regenerated (SPEC §6 recovery paths, issue 13).

Belongs here: the shared drill report and the version-marker snapshot/compare (``report``: comparisons pure,
snapshots through a narrow Kubernetes protocol), and one module per drill (``authority_loss``...), each keeping its
pure decisions apart from the acting code. Not here: backup and restore themselves
(:mod:`chamberlain.service.backup`), the lab's servers (:mod:`chamberlain.lab`).
"""
