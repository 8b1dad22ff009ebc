"""A process-wide bound on how many pixels are being decoded at full size at once.

A PNG cannot be decoded at reduced size: a 36 MP PNG of 35 KB costs 36 to 144 MB of
decoder memory (1 to 4 bytes a pixel) before it is scaled down to working resolution.
The server decodes on a thread pool, so without a bound four such uploads cost four
times that at once. Decodes reserve their pixels here first and wait while the budget
is spent; the working-resolution copy they keep is small and is not counted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PixelBudget:
    """At most ``limit`` pixels in flight; one reservation larger than the limit runs alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget for the ``with`` block, waiting until they fit."""
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight == 0 or self._in_flight + pixels <= self.limit)
            self._in_flight += pixels
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= pixels
                self._changed.notify_all()
