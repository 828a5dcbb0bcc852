"""Client threads that call a server back to back until the block they run in ends.

    class Traffic(LoadThreads):
        def call(self, index: int) -> None: ...   # one request of thread `index`

    with Traffic(threads=8) as traffic:
        ...                                       # the server is under load here

One copy of the start, stop and join every load-under-faults test needs.
"""

from __future__ import annotations

import threading
from typing import Self


class LoadThreads:
    """`threads` threads, each calling `call(index)` until the `with` block ends."""

    def __init__(self, threads: int) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(index,)) for index in range(threads)
        ]

    def call(self, index: int) -> None:
        raise NotImplementedError

    def _loop(self, index: int) -> None:
        while not self._stop.is_set():
            self.call(index)

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
