"""The ``chamberlain`` command line: thin typer commands that parse options and call the core.

Nothing here decides anything; it loads, calls a core function, prints the result, and maps errors to exit codes
(0 success, 1 findings or failure, 2 usage error).
"""
