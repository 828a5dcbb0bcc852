"""The batching scheduler: concurrent requests for one version and signature, one model run.

TF Serving's semantics (`SharedBatchScheduler` + `BatchingSession`), so its users'
batching files behave the same: one queue per (version, signature, output filter); a
queue holds at most `max_enqueued_batches` batches, the last one open for more requests;
a batch runs when it is full, when its oldest request has waited `batch_timeout_micros`
(0: as soon as a batch thread is free), when its version is being unloaded, or at
shutdown. A merged batch is padded up to the next `allowed_batch_sizes` entry, run once,
and its outputs are cut back into each request's rows, in order.

Where the time goes matters more than anything else here (the serving loop is one Python
thread), so the request path does the least it can: on the event loop, one lock, one
append, one future; on a batch thread, one `numpy.concatenate` per input, one model run,
one slice per request and output; back on the loop, one `call_soon_threadsafe` per batch
(not per request) resolves every future of the batch.

Each queued request holds its version (the handle's in-flight count), so an unload waits
until the queue has drained, and a request never runs on an unloaded model.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import structlog

from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.errors import Code, ServingError, invalid_argument
from pyserving.engine.events import BatchRun, Event
from pyserving.engine.runner import ModelCall
from pyserving.engine.servable_map import ServableHandle
from pyserving.engine.trace_hooks import Tracer

log = structlog.get_logger("pyserving.batching")

RejectCallback = Callable[[str, str, str], None]

# While a retiring version's requests wait for a long batch timeout, batch threads look
# again this often, so an unload never waits a whole timeout for its queue to drain.
RETIRE_POLL_S = 0.05

QUEUE_FULL = "queue_full"
TOO_LARGE = "too_large"
DEADLINE = "deadline_exceeded"
SHAPE_MISMATCH = "shape_mismatch"
SHUTTING_DOWN = "shutting_down"


class _Task:
    """One request: its inputs, where its answer goes, and (if split) the parts so far."""

    __slots__ = (
        "deadline",
        "done",
        "enqueued",
        "future",
        "inputs",
        "loop",
        "parts",
        "pending",
        "size",
        "trace",
    )

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        size: int,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[dict[str, np.ndarray]],
        deadline: float | None,
    ) -> None:
        self.inputs = inputs
        self.size = size
        self.loop = loop
        self.future = future
        self.deadline = deadline
        self.enqueued = 0.0  # the batcher's clock when queued
        self.done = False
        self.pending = 1  # pieces not yet answered (more than 1 only when split)
        self.parts: list[tuple[int, dict[str, np.ndarray]]] | None = None
        self.trace: Any = None  # the request's trace, when a tracer records it


# One piece of a task in a batch: (task, first row, end row). Unsplit: (task, 0, size).
_Entry = tuple[_Task, int, int]


class _Batch:
    __slots__ = ("entries", "joined", "opened", "size")

    def __init__(self, entry: _Entry, opened: float) -> None:
        self.entries: list[_Entry] = [entry]
        self.size = entry[2] - entry[1]
        self.opened = opened  # when its oldest request was enqueued
        self.joined = opened  # when its newest request was enqueued (kept with idle_micros)


class _Queue:
    __slots__ = ("batches", "handle", "output_filter", "signature")

    def __init__(
        self, handle: ServableHandle, signature: str, output_filter: tuple[str, ...]
    ) -> None:
        self.handle = handle
        self.signature = signature
        self.output_filter = output_filter
        self.batches: deque[_Batch] = deque()


_Resolution = tuple[asyncio.Future[Any], Any, bool]  # (future, value, is_error)


class BatchingRunner:
    """A `Runner` that merges concurrent requests; see the module docstring."""

    def __init__(
        self,
        options: BatchingOptions,
        publish: Callable[[Event], Any] | None = None,
        on_reject: RejectCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        tracer: Tracer | None = None,
    ) -> None:
        options.validate()
        self.options = options
        self.tracer = tracer  # None: traces are off (one check per request and per batch)
        self._publish = publish
        self._on_reject = on_reject
        self._clock = clock
        self._max_size = options.max_batch_size
        self._exec_size = options.execution_batch_size
        self._split = options.enable_large_batch_splitting
        self._timeout_s = options.batch_timeout_s
        self._idle_s = options.idle_micros / 1e6
        self._max_batches = options.max_enqueued_batches
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[tuple[ServableHandle, str, tuple[str, ...]], _Queue] = {}
        # Every (version, signature) that has had a queue, while its version serves: the
        # queue-depth gauge reports them at 0 when empty instead of letting them vanish.
        self._known: dict[tuple[str, int, str], ServableHandle] = {}
        self._closed = False
        self._idle = 0  # batch threads waiting for work: wake one only when there is one
        self._threads = [
            threading.Thread(target=self._work, name=f"{options.thread_pool_name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------ event-loop side
    async def run(
        self, handle: ServableHandle, call: ModelCall, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        signature, inputs = call.signature, call.inputs
        size = self._request_size(handle, signature, inputs)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        task = _Task(inputs, size, loop, future, deadline)
        task.enqueued = self._clock()
        if self.tracer is not None:
            task.trace = self.tracer.current()
        self._enqueue(handle, signature, tuple(call.output_filter), task)
        return await future

    def _request_size(
        self, handle: ServableHandle, signature: str, inputs: Mapping[str, np.ndarray]
    ) -> int:
        size = -1
        for alias, array in inputs.items():
            shape = array.shape
            if not shape:
                raise invalid_argument(
                    f"input '{alias}' is a scalar; with batching every input needs a 0th "
                    "(batch) dimension"
                )
            if size < 0:
                size = shape[0]
            elif shape[0] != size:
                raise invalid_argument(
                    "with batching all inputs must have the same 0th-dimension size (the "
                    f"batch size), but input '{alias}' has {shape[0]} and another has {size}"
                )
        if size > self._max_size:
            self._rejected(handle, signature, TOO_LARGE)
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size {self._max_size}: "
                "send fewer rows per request, or raise max_batch_size in the batching "
                "parameters (or enable_large_batch_splitting)"
            )
        return max(size, 0)

    def _enqueue(
        self,
        handle: ServableHandle,
        signature: str,
        output_filter: tuple[str, ...],
        task: _Task,
    ) -> None:
        size = task.size
        exec_size = self._exec_size
        with self._cond:
            if self._closed:
                self._rejected(handle, signature, SHUTTING_DOWN)
                raise ServingError(
                    Code.UNAVAILABLE, "the server is shutting down and takes no new requests"
                )
            key = (handle, signature, output_filter)
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(handle, signature, output_filter)
                self._known[(handle.model, handle.version, signature)] = handle
            batches = queue.batches
            before = len(batches)
            room = exec_size - batches[-1].size if before else 0
            if before and size <= room:
                last = batches[-1]
                last.entries.append((task, 0, size))
                last.size += size
                if self._idle_s:
                    last.joined = self._clock()
                pieces = 1
            elif not self._split or (size <= exec_size and room == 0):
                if before >= self._max_batches:
                    self._queue_full(queue, handle, signature, key)
                batches.append(_Batch((task, 0, size), self._clock()))
                pieces = 1
            else:  # fill the open batch with its first rows, the rest in new batches
                pieces = self._enqueue_split(queue, task, room, handle, signature, key)
            handle.retain(pieces)
            # Wake a batch thread when this request created a new timer (the queue was
            # empty) or made the first batch ready (full, or closed by a newer batch).
            if self._idle and (
                before == 0 or (before == 1 and (len(batches) > 1 or batches[0].size >= exec_size))
            ):
                self._cond.notify()

    def _enqueue_split(
        self,
        queue: _Queue,
        task: _Task,
        room: int,
        handle: ServableHandle,
        signature: str,
        key: tuple[ServableHandle, str, tuple[str, ...]],
    ) -> int:
        """Cut a request too big for the open batch: fill it, then whole new batches."""
        batches, exec_size, size = queue.batches, self._exec_size, task.size
        rest = size - room
        new = -(-rest // exec_size)
        if len(batches) + new > self._max_batches:
            self._queue_full(queue, handle, signature, key)
        entries: list[_Entry] = []
        if room > 0:
            entries.append((task, 0, room))
            batches[-1].entries.append(entries[0])
            batches[-1].size += room
        now = self._clock()
        for start in range(room, size, exec_size):
            entry = (task, start, min(start + exec_size, size))
            entries.append(entry)
            batches.append(_Batch(entry, now))
        task.pending = len(entries)
        task.parts = []
        return len(entries)

    def _queue_full(
        self,
        queue: _Queue,
        handle: ServableHandle,
        signature: str,
        key: tuple[ServableHandle, str, tuple[str, ...]],
    ) -> None:
        if not queue.batches:
            del self._queues[key]
        self._rejected(handle, signature, QUEUE_FULL)
        raise ServingError(
            Code.UNAVAILABLE,
            "The batch scheduling queue to which this task was submitted is full: retry "
            "later, or raise max_enqueued_batches in the batching parameters",
        )

    def _rejected(self, handle: ServableHandle, signature: str, reason: str) -> None:
        if self._on_reject is not None:
            try:
                self._on_reject(handle.model, signature, reason)
            except Exception:
                log.exception("on_reject_failed", reason=reason)

    # ------------------------------------------------------------ observers
    def queue_depths(self) -> dict[tuple[str, int, str], int]:
        """Requests waiting, by (model, version, signature); for a queue-depth gauge."""
        depths: dict[tuple[str, int, str], int] = {}
        with self._cond:
            for key, handle in list(self._known.items()):
                if handle.retiring:
                    del self._known[key]
                else:
                    depths[key] = 0
            for queue in self._queues.values():
                key = (queue.handle.model, queue.handle.version, queue.signature)
                count = sum(len(batch.entries) for batch in queue.batches)
                depths[key] = depths.get(key, 0) + count
        return depths

    # ------------------------------------------------------------ batch threads
    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = self._clock()
                    taken = self._take_ready(now)
                    if taken is not None:
                        break
                    if self._closed and not self._queues:
                        return
                    self._idle += 1
                    self._cond.wait(self._wait_s(now))
                    self._idle -= 1
                if self._idle and self._queues and self._find_ready(now) is not None:
                    self._cond.notify()  # another batch is ready: hand it to an idle thread
            self._run_batch(*taken)

    def _is_ready(self, queue: _Queue, now: float) -> bool:
        first = queue.batches[0]
        return (
            len(queue.batches) > 1
            or first.size >= self._exec_size
            or now - first.opened >= self._timeout_s
            or (self._idle_s > 0 and now - first.joined >= self._idle_s)
            or self._closed
            or queue.handle.retiring
        )

    def _find_ready(self, now: float) -> tuple[ServableHandle, str, tuple[str, ...]] | None:
        for key, queue in self._queues.items():
            if self._is_ready(queue, now):
                return key
        return None

    def _take_ready(self, now: float) -> tuple[_Queue, _Batch] | None:
        key = self._find_ready(now)
        if key is None:
            return None
        queue = self._queues.pop(key)
        batch = queue.batches.popleft()
        if queue.batches:
            self._queues[key] = queue  # to the back: queues take turns
        return queue, batch

    def _wait_s(self, now: float) -> float | None:
        if not self._queues:
            return None  # a request or close() will notify
        due = min(queue.batches[0].opened for queue in self._queues.values()) + self._timeout_s
        if self._idle_s:
            quiet = min(queue.batches[0].joined for queue in self._queues.values()) + self._idle_s
            due = min(due, quiet)
        return max(0.0, min(due - now, RETIRE_POLL_S))

    def _run_batch(self, queue: _Queue, batch: _Batch) -> None:
        resolutions: list[_Resolution] = []
        try:
            live = self._live_entries(queue, batch.entries, resolutions)
            if live:
                self._execute(queue, live, batch.opened, resolutions)
        except Exception:  # a bug here must not kill the batch thread or lose requests
            log.exception("batch_failed", model=queue.handle.model, signature=queue.signature)
            for task, _, _ in batch.entries:
                self._fail(task, Code.INTERNAL, _INTERNAL_MESSAGE, resolutions)
        finally:
            # Release first: the answers are computed, and each waiting request still holds
            # the version itself (RequestCore.execute) until it has its answer; released after,
            # a woken request could see the batch's holds still counted.
            queue.handle.release(len(batch.entries))
            self._resolve(resolutions)

    def _live_entries(
        self, queue: _Queue, entries: list[_Entry], resolutions: list[_Resolution]
    ) -> list[_Entry]:
        now = self._clock()
        live = []
        for entry in entries:
            task = entry[0]
            if task.done:
                continue
            if task.future.cancelled():  # the caller gave up (the RPC was cancelled)
                task.done = True
                continue
            if task.deadline is not None and now >= task.deadline:
                self._rejected(queue.handle, queue.signature, DEADLINE)
                self._fail(
                    task,
                    Code.DEADLINE_EXCEEDED,
                    "the request's deadline passed while it waited for a batch",
                    resolutions,
                )
                continue
            live.append(entry)
        return live

    def _execute(
        self,
        queue: _Queue,
        live: list[_Entry],
        opened: float,
        resolutions: list[_Resolution],
    ) -> None:
        size = sum(stop - start for _, start, stop in live)
        padded = self.options.padded_size(size) if size else 0
        try:  # the common case: every request has the same inner shapes
            inputs = _merge(live, padded - size, self.options.pad_variable_length_inputs)
        except ValueError:
            live = self._same_shapes(queue, live, resolutions)
            if not live:
                return
            size = sum(stop - start for _, start, stop in live)
            padded = self.options.padded_size(size) if size else 0
            inputs = _merge(live, padded - size, self.options.pad_variable_length_inputs)
        handle = queue.handle
        now = self._clock()
        wait_s = now - opened
        error: ServingError | None = None
        started_ns = time.time_ns() if self.tracer is not None else 0
        try:
            outputs = handle.servable.run(queue.signature, inputs, queue.output_filter)
            for name, array in outputs.items():
                if np.ndim(array) == 0 or len(array) != padded:
                    raise ServingError(
                        Code.INTERNAL,
                        f"output '{name}' of signature '{queue.signature}' has shape "
                        f"{list(np.shape(array))}, not a 0th dimension of the batch size "
                        f"{padded}: this model cannot be served with --enable_batching",
                    )
        except ServingError as exc:
            error = exc
        except Exception:
            log.exception("batch_run_raised", model=handle.model, version=handle.version)
            error = ServingError(Code.INTERNAL, _INTERNAL_MESSAGE)
        if self.tracer is not None:
            self._trace_batch(self.tracer, queue, live, started_ns, size, padded, error)
        if self._publish is not None:
            self._publish(
                BatchRun(
                    model=handle.model,
                    version=handle.version,
                    signature=queue.signature,
                    size=size,
                    padded_size=padded,
                    oldest_wait_s=wait_s,
                    task_sizes=tuple(stop - start for _, start, stop in live),
                    task_waits_s=tuple(now - task.enqueued for task, _, _ in live),
                    inputs=len(inputs),
                )
            )
        if error is not None:
            for task, _, _ in live:
                self._fail(task, error.code, error.message, resolutions)
            return
        offset = 0
        for task, start, stop in live:
            end = offset + stop - start
            part = {name: array[offset:end] for name, array in outputs.items()}
            offset = end
            if task.parts is None:
                task.done = True
                resolutions.append((task.future, part, False))
            else:
                self._deliver_part(task, start, part, resolutions)

    def _trace_batch(
        self,
        tracer: Tracer,
        queue: _Queue,
        live: list[_Entry],
        started_ns: int,
        size: int,
        padded: int,
        error: ServingError | None,
    ) -> None:
        try:
            tracer.batch_run(
                [task.trace for task, _, _ in live],
                queue.handle.model,
                queue.handle.version,
                queue.signature,
                started_ns,
                time.time_ns(),
                size,
                padded,
                "" if error is None else error.code.name,
            )
        except Exception:  # tracing must never fail a batch
            log.exception("batch_trace_failed", model=queue.handle.model)

    def _same_shapes(
        self, queue: _Queue, live: list[_Entry], resolutions: list[_Resolution]
    ) -> list[_Entry]:
        """Fail requests whose inner dimensions (ranks, with padding) differ from the oldest's."""
        if len(live) == 1:
            return live
        pad = self.options.pad_variable_length_inputs
        reference = {alias: array.shape[1:] for alias, array in live[0][0].inputs.items()}
        kept = []
        for entry in live:
            task = entry[0]
            for alias, array in task.inputs.items():
                inner = array.shape[1:]
                if (len(inner) != len(reference[alias])) if pad else (inner != reference[alias]):
                    self._rejected(queue.handle, queue.signature, SHAPE_MISMATCH)
                    self._fail(
                        task,
                        Code.FAILED_PRECONDITION,
                        f"Tensors with name '{alias}' from different tasks have different "
                        f"shapes ({list(array.shape)} here, {[-1, *reference[alias]]} in "
                        "the batch) and padding is turned off. Set pad_variable_length_inputs "
                        "to true, or ensure that all tensors with the same name have equal "
                        "dimensions starting with the first dim.",
                        resolutions,
                    )
                    break
            else:
                kept.append(entry)
        return kept

    def _deliver_part(
        self, task: _Task, start: int, part: dict[str, np.ndarray], resolutions: list[_Resolution]
    ) -> None:
        with self._cond:  # pieces of one request may finish on different batch threads
            if task.done:
                return
            assert task.parts is not None
            task.parts.append((start, part))
            task.pending -= 1
            if task.pending:
                return
            task.done = True
            parts = [p for _, p in sorted(task.parts, key=lambda item: item[0])]
        merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        resolutions.append((task.future, merged, False))

    def _fail(self, task: _Task, code: Code, message: str, resolutions: list[_Resolution]) -> None:
        if task.parts is not None:
            with self._cond:  # another piece may be failing or finishing on another thread
                if task.done:
                    return
                task.done = True
        else:
            if task.done:
                return
            task.done = True
        # A fresh exception per request: one raised in many coroutines would share a traceback.
        resolutions.append((task.future, ServingError(code, message), True))

    @staticmethod
    def _resolve(resolutions: list[_Resolution]) -> None:
        """One hop back to each event loop per batch, however many requests it answers."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Resolution]] = {}
        for item in resolutions:
            by_loop.setdefault(item[0].get_loop(), []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_set_results, items)

    # ------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Run every queued batch now, then stop the batch threads; new requests: UNAVAILABLE."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


_INTERNAL_MESSAGE = "internal error while running the batch; the server log has the details"


def _set_results(items: list[_Resolution]) -> None:
    for future, value, is_error in items:
        if future.done():
            continue
        if is_error:
            future.set_exception(value)
        else:
            future.set_result(value)


def _merge(live: list[_Entry], padding: int, pad_inner: bool) -> dict[str, np.ndarray]:
    """One array per input: the requests' rows in order, then `padding` copies of row 0."""
    merged = {}
    for alias in live[0][0].inputs:
        parts = [
            task.inputs[alias] if stop - start == task.size else task.inputs[alias][start:stop]
            for task, start, stop in live
        ]
        if pad_inner:
            parts = _pad_inner(parts)
        if padding:
            parts.append(np.repeat(parts[0][:1], padding, axis=0))
        merged[alias] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return merged


def _pad_inner(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Pad dimensions 1.. to the largest in the batch with each tensor's first value (TF's way)."""
    target = tuple(max(dims) for dims in zip(*(p.shape[1:] for p in parts), strict=True))
    padded = []
    for part in parts:
        inner = part.shape[1:]
        if inner == target:
            padded.append(part)
        elif part.size == 0:  # no first value to pad with, and nothing to keep
            padded.append(np.zeros((part.shape[0], *target), dtype=part.dtype))
        else:
            widths = [(0, 0)] + [(0, want - have) for have, want in zip(inner, target, strict=True)]
            padded.append(np.pad(part, widths, constant_values=part.flat[0]))
    return padded
