"""Frame-time benchmarks: ``python benchmarks/run.py``."""
