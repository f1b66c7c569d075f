"""Rotation as a property of the system (SPEC §5; issue 5, in progress).

Belongs here: the policy in force and its drift from Git (``policy``), the pure "is rotation due?" decision with
the clock injected (``policy``), and — to come — rotators and the durable workflow. Deciding is kept apart from
acting: nothing in ``policy`` does I/O or reads the wall clock.
"""
