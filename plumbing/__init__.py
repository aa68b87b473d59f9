"""Machinery the producer and the consumers share, knowing nothing of either (backoff, rate caps)."""
