"""``python -m benchmarks``: the same as ``benchmarks/run``."""

from benchmarks.runner import main

raise SystemExit(main())
