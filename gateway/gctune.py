"""Garbage-collector settings for the long-running processes (gateway, store writer,
simulator).

CPython's default gen-0 threshold (700 container allocations net of frees) makes a busy
gateway collect ~900 times in a 50,000-message benchmark run, 0.42-0.49 s of its 3.8-4.2 s of
CPU (docs/benchmarks.md, "Garbage collector"): the pipeline allocates PDUs, records and
trio tasks by the hundred thousand, nearly all freed by reference counting, and every
collection still walks the young generation and, every tenth time, the older ones. The
cycles it exists for (tracebacks of caught exceptions, a few trio internals) are rare here.

`tune()` first freezes what start-up allocated (modules, config, compiled statements: they
live until exit, so no collection needs to look at them again), then raises the gen-0
threshold so a collection runs after 50,000 net allocations: cyclic garbage is still
collected, ~70x less often, and memory held by uncollected cycles stays bounded by that
count.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune() -> None:
    """Freeze start-up objects and set the thresholds above (call once, after start-up)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
