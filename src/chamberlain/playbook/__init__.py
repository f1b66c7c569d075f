"""Playbooks for when things go wrong: the pure decisions behind ``chamberlain playbook ...`` and ``root rotate``.

Belongs here: what a compromise exposes (:mod:`.compromise`, over the intent graph), what a root of trust exposes
through Git history (:mod:`.root`), and how a custody change reads against the shares in force (:mod:`.custody`).
Every function is pure: no I/O, no clock, no value ever. Not here: acting (rotating, rekeying, re-encrypting —
:mod:`chamberlain.service.playbooks`), or the command line.
"""
