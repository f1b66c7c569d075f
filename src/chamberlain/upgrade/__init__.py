"""``chamberlain upgrade``: the move of a live installation made by the previous release (v0.4.0) to this one.

Belongs here: the pure planner (:mod:`.plan`: what was observed → the ordered steps, each with what it changes and
whether it is needed, waiting on someone else, or manual) and the value-free decision of the marker re-key
(:mod:`.markers`). Not here: reaching the servers, logging in and running the steps (``chamberlain.service.upgrade``),
the authority configuration itself (``chamberlain.authority.configure``, reused as it is).
"""
