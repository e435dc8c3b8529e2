"""Repeatable benchmarks; run with ``make bench`` (results go in docs/PERFORMANCE.md)."""
