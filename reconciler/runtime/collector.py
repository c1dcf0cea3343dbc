"""The cyclic garbage collector, paused while a plan builds its estates.

Loading, observing and planning allocate hundreds of thousands of small containers (parsed
documents, records, their tuples and maps) and free few of them, so the collector's
generation-2 passes walk an ever larger heap and find almost nothing: about a quarter of a
cold plan's CPU time at 25,600 VMs (bench/plan.py). Records are immutable trees, so little
cyclic garbage is made meanwhile; reference counting still frees everything else at once,
and the collector runs again as soon as the block ends (a long-running loop pauses it only
per tick).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
