"""The manager: the reconcile loop over each model's version harnesses.

It reacts to facts on the bus (aspired versions, load and unload results, configured
labels, shutdown): it keeps one harness (engine/harness.py) per (model, version), asks
the aspired-version policy for the next action on the model's versions, has the
harness fire its machine's trigger, and hands the slow work (the harness's load and
unload jobs) to small thread pools whose results come back as facts on the bus. All
machine triggers, and every write to the serving map (engine/map_writer.py), therefore
happen on the bus's one dispatch thread, in the order of the event log: what replay
re-drives.

Set `execute=False` to get the same decisions with no loads and no pools (replay).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import structlog

from pyserving.engine.events import (
    AspiredVersion,
    AspiredVersions,
    Event,
    LoadFailed,
    LoadSucceeded,
    PromotionGatesSet,
    PromotionVerdict,
    ShutdownRequested,
    UnloadFinished,
    VersionForgotten,
    VersionLabelsSet,
)
from pyserving.engine.harness import LoadAttempts, LoaderHarness
from pyserving.engine.load_timeout import TimedLoads
from pyserving.engine.map_writer import ServingMapWriter
from pyserving.engine.policy import (
    Action,
    ActionKind,
    AspiredVersionPolicy,
    AvailabilityPreservingPolicy,
    VersionSnapshot,
)
from pyserving.engine.promotion import PromotionJudge
from pyserving.engine.servable import Loader
from pyserving.engine.servable_id import ServableId
from pyserving.engine.servable_map import ServableHandle, WritableServableMap
from pyserving.statemachines.servable_version import State

__all__ = ["MAX_ENDED_KEPT", "LoadAttempts", "Manager", "VersionStatus"]

log = structlog.get_logger("pyserving.manager")

Publish = Callable[[Event], object]

ABANDONED_LOADS_PER_THREAD = 4  # hung loads left running before further loads fail fast
MAX_ENDED_KEPT = 16  # ended versions remembered per model (GetModelStatus shows them as END)


@dataclass(frozen=True)
class VersionStatus:
    model: str
    version: int
    state: State
    error: str
    fingerprint: str = ""  # the loaded bytes' (adapters/loaders/provenance.py); "" unless loaded


class Manager:
    def __init__(
        self,
        publish: Publish,
        loader_for: Callable[[str], Loader] | None,
        servable_map: WritableServableMap,
        policy: AspiredVersionPolicy | None = None,
        retry: LoadAttempts | None = None,
        num_load_threads: int = 2,
        num_unload_threads: int = 1,
        execute: bool = True,
        allow_unavailable_labels: bool = False,
        fingerprint: Callable[[str, str], str] | None = None,
        promotion: PromotionJudge | None = None,
    ) -> None:
        self._publish = publish
        self._loader_for = loader_for  # model name → its platform's loader, asked once per aspire
        self._fingerprint = fingerprint  # (model, version folder) → its model bytes' fingerprint
        self.serving = ServingMapWriter(servable_map, publish, allow_unavailable_labels)
        self._policy = policy or AvailabilityPreservingPolicy()
        self._retry = retry = retry or LoadAttempts()
        self._execute = execute
        self._lock = threading.RLock()  # guards the dicts below for readers on other threads
        self._harnesses: dict[str, dict[int, LoaderHarness]] = {}
        self._aspired: dict[str, set[int]] = {}
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
        self._promotion = promotion  # the gates' judge; its work runs on the load pool
        if promotion is not None and execute:
            self.serving.on_promotion = self._judge_later

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
        elif isinstance(event, VersionLabelsSet):
            self.serving.set_labels(event.model, event.labels)
        elif isinstance(event, PromotionVerdict):
            self.serving.verdict(event)  # the log line is the bus's (adapters/lifecycle_log)
        elif isinstance(event, PromotionGatesSet):
            self.serving.set_gates(event.gates)
        elif isinstance(event, ShutdownRequested):
            self._on_shutdown(event)

    def _on_aspired(self, event: AspiredVersions) -> None:
        model = event.model
        known = self._harnesses.get(model, {})  # only this (dispatch) thread changes it
        fresh = {
            wanted.version: self._new_harness(model, wanted)  # outside the readers' lock
            for wanted in event.versions
            if wanted.version not in known or known[wanted.version].state == State.END
        }
        with self._lock:
            self._harnesses.setdefault(model, {}).update(fresh)
            self._aspired[model] = {v.version for v in event.versions}
        self._reconcile(model)

    def _new_harness(self, model: str, wanted: AspiredVersion) -> LoaderHarness:
        """The version's harness, with its platform's loader resolved now, once."""
        loader, error, fingerprinter = None, "", None
        if self._execute and self._fingerprint is not None:
            fingerprinter = partial(self._fingerprint, model)
        if self._execute and self._loader_for is not None:
            try:
                loader = self._loader_for(model)
            except Exception as exc:  # the version fails its load, saying why
                error = f"{type(exc).__name__}: {exc}"
        return LoaderHarness(
            model,
            wanted.version,
            wanted.path,
            self._publish,
            loader,
            self._retry,
            self._timed_loads,
            self._stopping,
            loader_error=error,
            fingerprinter=fingerprinter,
        )

    def _on_load_succeeded(self, event: LoadSucceeded) -> None:
        harness = self._harness(event.model, event.version)
        if harness is None or (self._execute and harness.servable is None):
            log.error("load_result_for_unknown_version", model=event.model, version=event.version)
            return
        handle = harness.load_succeeded(event.duration_s)
        if handle is not None:
            self.serving.add(handle)
        self._reconcile(event.model)

    def _on_load_failed(self, event: LoadFailed) -> None:
        if event.will_retry:
            return  # still loading: the harness retries after its interval
        harness = self._harness(event.model, event.version)
        if harness is None:
            return
        harness.load_failed(event.error)
        self._reconcile(event.model)

    def _on_unload_finished(self, event: UnloadFinished) -> None:
        harness = self._harness(event.model, event.version)
        if harness is None:
            return
        harness.unload_finished(event.duration_s)
        self._reconcile(event.model)

    def _judge_later(self, label: str, old: ServableHandle, new: ServableHandle) -> None:
        """Run the label's gates on the load pool; the verdict returns as a fact."""
        judge, pool = self._promotion, self._load_pool
        if judge is not None and pool is not None and not self._stopping.is_set():
            pool.submit(lambda: self._publish(judge.judge(label, old, new, self._stopping)))

    def _on_shutdown(self, event: ShutdownRequested) -> None:
        self._stopping.set()
        with self._lock:
            models = list(self._harnesses)
            for model in models:
                self._aspired[model] = set()
        for model in models:
            self._reconcile(model)

    def _harness(self, model: str, version: int) -> LoaderHarness | None:
        return self._harnesses.get(model, {}).get(version)

    def _reconcile(self, model: str) -> None:
        """Apply the policy's actions until it has nothing more to do."""
        while True:
            with self._lock:
                harnesses = self._harnesses.get(model, {})
                aspired = self._aspired.get(model, set())
                snapshot = [
                    VersionSnapshot(v, h.state, v in aspired)
                    for v, h in harnesses.items()
                    if h.state != State.END
                ]
            action = self._policy.next_action(snapshot)
            if action is None:
                self._forget_oldest_ended(model)
                return
            self._apply(harnesses[action.version], action)

    def _forget_oldest_ended(self, model: str) -> None:
        """Keep the last MAX_ENDED_KEPT ended versions per model for GetModelStatus.

        A model that gets a new version every hour would otherwise grow its table (and
        every policy step, which scans it, and its metric series) without bound.
        """
        with self._lock:
            harnesses = self._harnesses.get(model, {})
            if len(harnesses) <= MAX_ENDED_KEPT:
                return
            ended = sorted(v for v, h in harnesses.items() if h.state == State.END)
            forgotten = ended[: max(0, len(ended) - MAX_ENDED_KEPT)]
            for version in forgotten:
                del harnesses[version]
        for version in forgotten:
            self._publish(VersionForgotten(model=model, version=version))

    def _apply(self, harness: LoaderHarness, action: Action) -> None:
        policy = self._policy.name
        if action.kind is ActionKind.LOAD:
            harness.start_load(reason=f"aspired; {policy} policy")
            if self._load_pool is not None:
                self._load_pool.submit(harness.load)
        elif action.kind is ActionKind.UNLOAD:
            handle = self.serving.remove(harness.model, harness.version)
            harness.start_unload(reason=f"no longer aspired; {policy} policy")
            if self._unload_pool is not None:
                self._unload_pool.submit(harness.unload, handle)
        elif action.kind is ActionKind.CANCEL:
            harness.cancel(reason="no longer aspired before loading started")
        elif action.kind is ActionKind.RETIRE:
            harness.retire(reason="failed version no longer aspired")

    # ------------------------------------------------------------ reader side
    def statuses(self, model: str) -> list[VersionStatus] | None:
        """Every known version of a model (END ones included), or None if unknown."""
        with self._lock:
            harnesses = self._harnesses.get(model)
            if harnesses is None:
                return None
            return [
                VersionStatus(model, v, h.state, h.error, h.fingerprint)
                for v, h in sorted(harnesses.items())
            ]

    def models(self) -> list[str]:
        with self._lock:
            return sorted(self._harnesses)

    def states(self) -> Mapping[ServableId, State]:
        with self._lock:
            return {
                ServableId(model, v): h.state
                for model, harnesses in self._harnesses.items()
                for v, h in harnesses.items()
            }

    def close(self) -> None:
        self._stopping.set()
        for pool in (self._load_pool, self._unload_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=False)
