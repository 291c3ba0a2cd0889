"""Helper modules of scripts/bench.py, the side-by-side filesystem benchmark (see that script)."""
