"""A lap timer for the named stages of building a sample (the data benchmark)."""
from __future__ import annotations

import time
from collections import Counter
from typing import Optional


class Laps:
    """Accumulates named durations into ``sink`` (a Counter of seconds); does nothing when ``sink`` is None.
    ``clock`` is wall time; a benchmark on a busy machine may set it to ``time.process_time`` (CPU time)."""

    clock = staticmethod(time.perf_counter)

    def __init__(self, sink: Optional[Counter]):
        self.sink, self.t = sink, self.clock() if sink is not None else 0.0

    def __call__(self, name: str) -> None:
        if self.sink is not None:
            now = self.clock()
            self.sink[name] += now - self.t
            self.t = now
