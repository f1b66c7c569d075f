"""chamberlain's benchmarks: scripts (``bench_*.py``, each runnable alone) and ``benchmarks/run``, which runs them
all and writes one table, a JSON report and a PNG of the growth curves (see benchmarks/README.md)."""
