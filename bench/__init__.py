"""fastopt benchmarks: ``python -m bench --help``."""
