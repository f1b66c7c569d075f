"""The ``chamberlain`` command line: thin typer commands over :mod:`chamberlain.service`.

Each command turns its options into a use case's inputs (options shared by several commands are declared once, in
:mod:`.options`), calls that one use case, prints its result (:mod:`.output`: text, or ``-o json|yaml``) and picks
the exit code (0 success, 1 findings or failure, 2 usage error). Nothing here decides anything or talks to a server
itself. As the entry point it is also the only place that reads the process environment and the wall clock, and
hands them down.
"""
