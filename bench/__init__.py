"""Benchmarks against the real processes on loopback (``make bench``, never ``make test``)."""
