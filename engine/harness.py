"""One servable version's harness, as TF Serving's LoaderHarness: everything about it in one place.

A harness owns its version's state machine, the loader its platform gives (resolved
once, when the version is aspired), the servable once loaded, its load attempts
(`max_num_load_retries` apart by `load_retry_interval`, each under the load timeout)
and its unload, which first *quiesces* (refuses new requests, waits for those in
flight: `VersionQuiesced`) and only then unloads (`UnloadFinished`, timing the unload
alone). The manager decides *when* (the reconcile loop); the harness knows *how*.

Two kinds of method, on two kinds of thread:
- machine triggers (`start_load`, `load_succeeded`, ...) run on the bus's dispatch
  thread, called by the manager, so every transition is in event-log order;
- jobs (`load`, `unload`) run on the manager's pools and report back only by
  publishing facts on the bus.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import structlog

from pyserving.engine.events import (
    Event,
    LoadFailed,
    LoadSucceeded,
    Transition,
    UnloadFinished,
    VersionQuiesced,
)
from pyserving.engine.load_timeout import TimedLoads
from pyserving.engine.servable import Loader, Servable
from pyserving.engine.servable_id import OfVersion
from pyserving.engine.servable_map import ServableHandle
from pyserving.statemachines.servable_version import ServableVersionMachine, State

log = structlog.get_logger("pyserving.manager")

Publish = Callable[[Event], object]
# A loaded version's folder → the fingerprint of its model bytes (adapters/loaders/provenance).
Fingerprinter = Callable[[str], str]

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class LoadAttempts:
    """How a version's load is attempted: how many retries, how far apart, how long each
    may take (--max_num_load_retries, --load_retry_interval_micros, the load timeout)."""

    max_num_load_retries: int = 5
    load_retry_interval_s: float = 60.0
    load_timeout_s: float = 0.0  # per attempt; 0 = no limit (see engine/load_timeout.py)


class LoaderHarness(OfVersion):
    """One (model, version): its machine, loader, servable, retries and timeout."""

    def __init__(
        self,
        model: str,
        version: int,
        path: str,
        publish: Publish,
        loader: Loader | None,
        retry: LoadAttempts,
        timed_loads: TimedLoads,
        stopping: threading.Event,
        loader_error: str = "",
        fingerprinter: Fingerprinter | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.path = path
        self.machine = ServableVersionMachine(
            model, version, path, lambda **move: publish(Transition(**move))
        )
        self.loader = loader  # None with no loads (replay), or when resolving it failed
        self.servable: Servable | None = None  # set by a successful load, before its fact
        self.fingerprint = ""  # set with the servable
        self._fingerprinter = fingerprinter
        self.attempts = 0  # load attempts made so far
        self._loader_error = loader_error
        self._publish = publish
        self._retry = retry
        self._timed_loads = timed_loads  # shared: it bounds hung loads across all versions
        self._stopping = stopping

    @property
    def state(self) -> State:
        return self.machine.current

    @property
    def error(self) -> str:
        return self.machine.error

    # ------------------------------------------------ machine triggers (dispatch thread)
    def start_load(self, reason: str) -> None:
        self.machine.start_load(reason=reason)

    def load_succeeded(self, duration_s: float) -> ServableHandle | None:
        """Mark the version available; the handle to serve it (None when nothing loaded)."""
        self.machine.load_succeeded(reason=f"loaded in {duration_s:.3f}s")
        if self.servable is None:
            return None
        return ServableHandle(self.model, self.version, self.servable, self.fingerprint)

    def load_failed(self, error: str) -> None:
        self.machine.load_failed(reason=error)

    def start_unload(self, reason: str) -> None:
        self.machine.start_unload(reason=reason)

    def unload_finished(self, duration_s: float) -> None:
        self.machine.unload_finished(reason=f"unloaded in {duration_s:.3f}s")

    def cancel(self, reason: str) -> None:
        self.machine.cancel(reason=reason)

    def retire(self, reason: str) -> None:
        self.machine.retire(reason=reason)

    # ------------------------------------------------------------- jobs (pool threads)
    def load(self) -> None:
        """Attempt the load up to 1 + max_num_load_retries times; publish the outcome."""
        attempts = self._retry.max_num_load_retries + 1
        while self.attempts < attempts:
            self.attempts += 1
            started = time.monotonic()
            try:
                servable = self._attempt()
            except Exception as exc:  # a broken version must never take the server down
                error = f"{type(exc).__name__}: {exc}".strip()
                will_retry = self.attempts < attempts and not self._stopping.is_set()
                self._failed(error, will_retry, time.monotonic() - started)
                if not will_retry:
                    return
                if self._stopping.wait(self._retry.load_retry_interval_s):
                    self._failed("load cancelled: server shutting down", False, 0.0)
                    return
                continue
            self.fingerprint = self._fingerprint()
            self.servable = servable
            self._publish(
                LoadSucceeded(
                    model=self.model,
                    version=self.version,
                    duration_s=time.monotonic() - started,
                    fingerprint=self.fingerprint,
                )
            )
            return

    def _fingerprint(self) -> str:
        """Read after the load, so it names the bytes loaded; an unreadable one costs a
        log line and an empty fingerprint, never the load."""
        if self._fingerprinter is None:
            return ""
        try:
            return self._fingerprinter(self.path)
        except Exception:
            log.exception("fingerprint_unreadable", model=self.model, version=self.version)
            return ""

    def _attempt(self) -> Servable:
        if self.loader is None:
            raise LookupError(self._loader_error or "no loader for this version's platform")
        what = f"{self.model}/{self.version}"
        return self._timed_loads.run(partial(self.loader.load, self.path), what)

    def _failed(self, error: str, will_retry: bool, duration_s: float) -> None:
        self._publish(
            LoadFailed(
                model=self.model,
                version=self.version,
                error=error[:MAX_ERROR_CHARS],
                attempt=self.attempts,
                will_retry=will_retry,
                duration_s=duration_s,
            )
        )

    def unload(self, handle: ServableHandle | None) -> None:
        """Quiesce (wait for in-flight requests), then unload; publish each point."""
        started = time.monotonic()
        if handle is not None:
            in_flight = handle.in_flight
            handle.retire_and_wait()
            self._publish(
                VersionQuiesced(
                    model=self.model,
                    version=self.version,
                    in_flight=in_flight,
                    drain_s=time.monotonic() - started,
                )
            )
            started = time.monotonic()
            try:
                handle.servable.unload()
            except Exception:
                log.exception("unload_raised", model=self.model, version=self.version)
            # What the servable dropped may sit in reference cycles (a Graph and its ops, a
            # python model's objects): collect them now, so that the memory is back before
            # UnloadFinished says the version has ended, not whenever the collector next runs.
            gc.collect()
        self.servable = None
        self.fingerprint = ""
        self._publish(
            UnloadFinished(
                model=self.model, version=self.version, duration_s=time.monotonic() - started
            )
        )

    def __repr__(self) -> str:
        return f"LoaderHarness({self.model!r}, {self.version}, state={self.state.value!r})"
