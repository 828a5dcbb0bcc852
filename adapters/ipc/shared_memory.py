"""Large request tensors through shared memory: segments a front-end lends, the engine maps.

Measured on the 2-CPU bench machine (`python -m bench.ipc_roundtrip`: one echo at c=1, the
reply as frames either way, 3-4 runs a size, shm/frames latency): up to 256 KiB the two
scatter around a tie (0.81-1.05); from 512 KiB the segment wins (0.70-0.96 at 512 KiB,
0.76-1.00 at 1 MiB, 0.81-0.84 at 4 MiB, 0.39-0.74 at 16 MiB) and mostly costs the front-end
less CPU, as the socket copies a tensor into and out of the kernel. So `SHM_THRESHOLD` is
512 KiB. The machine is shared and noisy: remeasure on a quiet one before tuning further.

Lifetimes: a front-end's `SegmentPool` owns its segments (created once per size class and
reused; unlinked on close; Python's resource tracker unlinks them if the front-end dies). A
segment is lent to one request and given back when its reply arrives, so the engine may read
a request's tensors until it answers, and no longer. The engine's `SegmentMaps` maps each
segment once and keeps the most recently used mappings.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import OrderedDict
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import structlog

log = structlog.get_logger("pyserving.ipc")

SHM_THRESHOLD = 512 << 10  # bytes; see the module docstring
POOL_BYTES = 256 << 20  # the most one front-end lends at once; beyond it tensors use frames
MAPS_KEPT = 256


def _size_class(nbytes: int) -> int:
    return 1 << max(nbytes - 1, 1).bit_length()


class SegmentPool:
    """A front-end's segments, by power-of-two size class, at most `max_bytes` in all."""

    def __init__(self, threshold: int = SHM_THRESHOLD, max_bytes: int = POOL_BYTES) -> None:
        self._lock = threading.Lock()  # big requests' tensors are copied in on threads
        self.threshold = threshold
        self.max_bytes = max_bytes
        self._free: dict[int, list[SharedMemory]] = {}
        self._all: list[SharedMemory] = []
        self._sizes: dict[str, int] = {}
        self._bytes = 0

    @property
    def segments(self) -> int:
        return len(self._all)

    def lend(self, nbytes: int) -> SharedMemory | None:
        """A segment of at least `nbytes`, or None: below the threshold, the pool is full, or
        the system gives no more shared memory (from then on the pool lends what it has)."""
        if nbytes < self.threshold:
            return None
        with self._lock:
            return self._lend(_size_class(nbytes))

    def _lend(self, size: int) -> SharedMemory | None:
        free = self._free.get(size)
        if free:
            return free.pop()
        if self._bytes + size > self.max_bytes:
            return None
        try:
            segment = SharedMemory(create=True, size=size)
        except OSError as error:
            # A file-size limit (EFBIG) or a full or missing /dev/shm: tensors go as frames,
            # and the pool keeps what it has rather than failing every large request.
            log.warning("shared_memory_unavailable", size=size, error=str(error))
            self.max_bytes = self._bytes
            return None
        self._all.append(segment)
        self._sizes[segment.name] = size
        self._bytes += size
        return segment

    def give_back(self, segment: SharedMemory) -> None:
        with self._lock:
            self._free.setdefault(self._sizes[segment.name], []).append(segment)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        for segment in self._all:
            segment.close()
            segment.unlink()
        self._all.clear()
        self._sizes.clear()
        self._free.clear()
        self._bytes = 0


def _attach(name: str) -> SharedMemory:
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)
    segment = SharedMemory(name=name)
    # Before 3.13 attaching registers the segment with this process's resource tracker,
    # which would unlink the front-end's segment when the engine exits.
    # _name: the "/"-prefixed name the tracker registered (typeshed lacks the private field)
    resource_tracker.unregister(segment._name, "shared_memory")  # type: ignore[attr-defined]
    return segment


class SegmentMaps:
    """The engine's mappings of front-ends' segments, the `MAPS_KEPT` most recently used."""

    def __init__(self, kept: int = MAPS_KEPT) -> None:
        self.kept = kept
        self._maps: OrderedDict[str, SharedMemory] = OrderedDict()

    def __call__(self, name: str) -> memoryview:
        segment = self._maps.get(name)
        if segment is None:
            segment = self._maps[name] = _attach(name)
            while len(self._maps) > self.kept:
                _, old = self._maps.popitem(last=False)
                _close(old)
        else:
            self._maps.move_to_end(name)
        buf = segment.buf
        assert buf is not None  # None only once closed, and a closed segment has left _maps
        return buf

    def close(self) -> None:
        while self._maps:
            _close(self._maps.popitem()[1])


def _close(segment: SharedMemory) -> None:
    with contextlib.suppress(BufferError):  # an array over it lives; the mapping goes with it
        segment.close()
