"""Rotation as a property of the system (SPEC §5; issue 5, in progress).

Belongs here: the policy in force and its drift from Git, and the pure "is rotation due?" decision with the clock
injected (``policy``); the rotators in the AWS Secrets Manager shape (``rotators``: create pending, set at target,
test, promote, revoke old); the durable workflow (``run``: the run record and lease; ``workflow``: a pure
``next_step`` and a one-step ``advance``). The controller, the RotationRun CRD and the CLI are to come. Deciding is
kept apart from acting: nothing in ``policy`` or ``next_step`` does I/O or reads the wall clock.
"""
