"""Rotation as a property of the system (SPEC §5).

Belongs here: the policy in force and its drift from Git, and the pure "is rotation due?" decision with the clock
injected (``policy``, ``policy_sync``); the rotators in the AWS Secrets Manager shape (``rotators``: create
pending, set at target, test, promote, revoke old); the durable workflow (``run``: the run record and lease;
``workflow``: a pure ``next_step`` and a one-step ``advance``); the glue that places one intent and builds what a
run acts through (``manual``). Not here: the long-running loop (:mod:`chamberlain.controller`), the triggers
(:mod:`chamberlain.triggers`), the commands (:mod:`chamberlain.service`). Deciding is kept apart from acting:
nothing in ``policy`` or ``next_step`` does I/O or reads the wall clock.
"""
