"""Measured speed: the timing harness, ``compare`` (every family on one shape), ``bench`` (each family against its
native alternatives and peers) and ``optimize`` (memory format by measurement)."""
