"""The manager: sole owner of the servable-version machines.

It reacts to facts on the bus (aspired versions, load and unload results, shutdown),
asks the aspired-version policy what to do next, fires the machine's trigger, keeps the
serving map in step, and hands the slow work (loads, unloads) to small thread pools
whose results come back as facts on the bus. All machine triggers therefore happen on
the bus's one dispatch thread, in the order of the event log: what replay re-drives.

Set `execute=False` to get the same decisions with no loads and no pools (replay).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import structlog

from pyserving.engine.events import (
    AspiredVersions,
    Event,
    LoadFailed,
    LoadSucceeded,
    ShutdownRequested,
    UnloadFinished,
)
from pyserving.engine.load_timeout import TimedLoads
from pyserving.engine.policy import (
    Action,
    ActionKind,
    AspiredVersionPolicy,
    AvailabilityPreservingPolicy,
    VersionSnapshot,
)
from pyserving.engine.servable import Loader, Servable
from pyserving.engine.servable_map import ServableHandle, ServableMap
from pyserving.statemachines.servable_version import ServableVersionMachine, State

log = structlog.get_logger("pyserving.manager")

Publish = Callable[[Event], object]

ABANDONED_LOADS_PER_THREAD = 4  # hung loads left running before further loads fail fast
MAX_ENDED_KEPT = 16  # ended versions remembered per model (GetModelStatus shows them as END)


@dataclass(frozen=True)
class RetryPolicy:
    max_num_load_retries: int = 5
    load_retry_interval_s: float = 60.0
    load_timeout_s: float = 0.0  # per attempt; 0 = no limit (see engine/load_timeout.py)


@dataclass(frozen=True)
class VersionStatus:
    model: str
    version: int
    state: State
    error: str


class Manager:
    def __init__(
        self,
        publish: Publish,
        loader_for: Callable[[str], Loader] | None,
        servable_map: ServableMap,
        policy: AspiredVersionPolicy | None = None,
        retry: RetryPolicy = RetryPolicy(),
        num_load_threads: int = 2,
        num_unload_threads: int = 1,
        execute: bool = True,
    ) -> None:
        self._publish = publish
        self._loader_for = loader_for  # model name → the loader of its platform
        self._map = servable_map
        self._policy = policy or AvailabilityPreservingPolicy()
        self._retry = retry
        self._execute = execute
        self._lock = threading.RLock()  # guards the dicts below for readers on other threads
        self._machines: dict[str, dict[int, ServableVersionMachine]] = {}
        self._aspired: dict[str, set[int]] = {}
        self._loaded: dict[tuple[str, int], Servable] = {}
        self._stopping = threading.Event()
        # A hung load is abandoned after retry.load_timeout_s; a few per load thread at most.
        self._timed_loads = TimedLoads(
            retry.load_timeout_s, max_abandoned=ABANDONED_LOADS_PER_THREAD * num_load_threads
        )
        self._load_pool = (
            ThreadPoolExecutor(num_load_threads, thread_name_prefix="load") if execute else None
        )
        self._unload_pool = (
            ThreadPoolExecutor(num_unload_threads, thread_name_prefix="unload") if execute else None
        )

    # ---------------------------------------------------------------- bus side
    def handle(self, event: Event) -> None:
        """Bus subscriber: every fact that concerns the lifecycle comes through here."""
        if isinstance(event, AspiredVersions):
            self._on_aspired(event)
        elif isinstance(event, LoadSucceeded):
            self._on_load_succeeded(event)
        elif isinstance(event, LoadFailed):
            self._on_load_failed(event)
        elif isinstance(event, UnloadFinished):
            self._on_unload_finished(event)
        elif isinstance(event, ShutdownRequested):
            self._on_shutdown(event)

    def _on_aspired(self, event: AspiredVersions) -> None:
        model = event.model
        with self._lock:
            machines = self._machines.setdefault(model, {})
            self._aspired[model] = {v.version for v in event.versions}
            for wanted in event.versions:
                existing = machines.get(wanted.version)
                if existing is None or existing.current == State.END:
                    machines[wanted.version] = ServableVersionMachine(
                        model, wanted.version, wanted.path, self._publish
                    )
        self._reconcile(model)

    def _on_load_succeeded(self, event: LoadSucceeded) -> None:
        machine = self._machine(event.model, event.version)
        servable = self._loaded.pop((event.model, event.version), None)
        if machine is None or (self._execute and servable is None):
            log.error("load_result_for_unknown_version", model=event.model, version=event.version)
            return
        machine.load_succeeded(reason=f"loaded in {event.duration_s:.3f}s")
        if servable is not None:
            self._map.add(ServableHandle(event.model, event.version, servable))
        self._reconcile(event.model)

    def _on_load_failed(self, event: LoadFailed) -> None:
        if event.will_retry:
            return  # still loading: the load job retries after its interval
        machine = self._machine(event.model, event.version)
        if machine is None:
            return
        machine.load_failed(reason=event.error)
        self._reconcile(event.model)

    def _on_unload_finished(self, event: UnloadFinished) -> None:
        machine = self._machine(event.model, event.version)
        if machine is None:
            return
        machine.unload_finished(reason=f"unloaded in {event.duration_s:.3f}s")
        self._reconcile(event.model)

    def _on_shutdown(self, event: ShutdownRequested) -> None:
        self._stopping.set()
        with self._lock:
            models = list(self._machines)
            for model in models:
                self._aspired[model] = set()
        for model in models:
            self._reconcile(model)

    def _machine(self, model: str, version: int) -> ServableVersionMachine | None:
        return self._machines.get(model, {}).get(version)

    def _reconcile(self, model: str) -> None:
        """Apply the policy's actions until it has nothing more to do."""
        while True:
            with self._lock:
                machines = self._machines.get(model, {})
                aspired = self._aspired.get(model, set())
                snapshot = [
                    VersionSnapshot(v, m.current, v in aspired)
                    for v, m in machines.items()
                    if m.current != State.END
                ]
            action = self._policy.next_action(snapshot)
            if action is None:
                self._forget_oldest_ended(model)
                return
            self._apply(model, machines[action.version], action)

    def _forget_oldest_ended(self, model: str) -> None:
        """Keep the last MAX_ENDED_KEPT ended versions per model for GetModelStatus.

        A model that gets a new version every hour would otherwise grow its machine table
        (and every policy step, which scans it) without bound.
        """
        with self._lock:
            machines = self._machines.get(model, {})
            if len(machines) <= MAX_ENDED_KEPT:
                return
            ended = sorted(v for v, m in machines.items() if m.current == State.END)
            for version in ended[: max(0, len(ended) - MAX_ENDED_KEPT)]:
                del machines[version]

    def _apply(self, model: str, machine: ServableVersionMachine, action: Action) -> None:
        policy = self._policy.name
        if action.kind is ActionKind.LOAD:
            machine.start_load(reason=f"aspired; {policy} policy")
            if self._load_pool is not None:
                self._load_pool.submit(self._load_job, model, machine.version, machine.path)
        elif action.kind is ActionKind.UNLOAD:
            handle = self._map.remove(model, machine.version)
            machine.start_unload(reason=f"no longer aspired; {policy} policy")
            if self._unload_pool is not None:
                self._unload_pool.submit(self._unload_job, model, machine.version, handle)
        elif action.kind is ActionKind.CANCEL:
            machine.cancel(reason="no longer aspired before loading started")
        elif action.kind is ActionKind.RETIRE:
            machine.retire(reason="failed version no longer aspired")

    # --------------------------------------------------------------- pool side
    def _load_job(self, model: str, version: int, path: str) -> None:
        assert self._loader_for is not None
        attempts = self._retry.max_num_load_retries + 1
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                loader = self._loader_for(model)
                servable = self._timed_loads.run(partial(loader.load, path), f"{model}/{version}")
            except Exception as exc:  # a broken version must never take the server down
                error = f"{type(exc).__name__}: {exc}".strip()
                will_retry = attempt < attempts and not self._stopping.is_set()
                self._publish(
                    LoadFailed(
                        model=model,
                        version=version,
                        error=error[:2000],
                        attempt=attempt,
                        will_retry=will_retry,
                        duration_s=time.monotonic() - started,
                    )
                )
                if not will_retry:
                    return
                if self._stopping.wait(self._retry.load_retry_interval_s):
                    self._publish(
                        LoadFailed(
                            model=model,
                            version=version,
                            error="load cancelled: server shutting down",
                            attempt=attempt,
                            will_retry=False,
                            duration_s=0.0,
                        )
                    )
                    return
                continue
            self._loaded[(model, version)] = servable
            self._publish(
                LoadSucceeded(model=model, version=version, duration_s=time.monotonic() - started)
            )
            return

    def _unload_job(self, model: str, version: int, handle: ServableHandle | None) -> None:
        started = time.monotonic()
        if handle is not None:
            handle.retire_and_wait()
            try:
                handle.servable.unload()
            except Exception:
                log.exception("unload_raised", model=model, version=version)
            # What the servable dropped may sit in reference cycles (a Graph and its ops, a
            # python model's objects): collect them now, so that the memory is back before
            # UnloadFinished says the version has ended, not whenever the collector next runs.
            gc.collect()
        self._publish(
            UnloadFinished(model=model, version=version, duration_s=time.monotonic() - started)
        )

    # ------------------------------------------------------------ reader side
    def statuses(self, model: str) -> list[VersionStatus] | None:
        """Every known version of a model (END ones included), or None if unknown."""
        with self._lock:
            machines = self._machines.get(model)
            if machines is None:
                return None
            return [
                VersionStatus(model, v, m.current, m.error) for v, m in sorted(machines.items())
            ]

    def models(self) -> list[str]:
        with self._lock:
            return sorted(self._machines)

    def all_settled(self) -> bool:
        """True when no version is loading or unloading and nothing waits to be loaded."""
        with self._lock:
            return all(
                m.current in (State.AVAILABLE, State.END, State.ERROR)
                for machines in self._machines.values()
                for m in machines.values()
            )

    def states(self) -> Mapping[tuple[str, int], State]:
        with self._lock:
            return {
                (model, v): m.current
                for model, machines in self._machines.items()
                for v, m in machines.items()
            }

    def close(self) -> None:
        self._stopping.set()
        for pool in (self._load_pool, self._unload_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=False)
