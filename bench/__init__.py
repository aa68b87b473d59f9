"""Benchmarks: scripts that print figures against goals, never assert them (run them as ``python bench/<name>.py``)."""
