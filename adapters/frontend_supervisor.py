"""The engine's front-end processes (`--workers=N`): started, watched, restarted, stopped.

Each worker slot runs `python -m pyserving.api.frontend` with the server's flags, the
engine's data-plane address and the engine's pid. A front-end that exits while the server
runs is started again at once (a slot that keeps failing within a second of its start
waits a little longer each time, up to `MAX_BACKOFF_S`), so a killed front-end is back
within about its start-up time while the others keep serving. Each start and exit is a
fact on the bus (`FrontendStarted`, `FrontendExited`), so the event log and `pyserving
replay` show them beside the versions' lifecycles.

A front-end that stops answering is replaced too: each one says it is alive every
`HEARTBEAT_S` (its `frontend_ready` call, from its event loop), and one silent for
`liveness_timeout_s` (a stopped process, a loop stuck in a deadlock) is killed with SIGKILL
and started again; its `FrontendExited` says `unresponsive`. Without this, a hung front-end
keeps its listening socket, and the kernel keeps giving it new connections that no one
answers.

A front-end dies with the engine: it asks the kernel for SIGKILL when its parent dies
(PR_SET_PDEATHSIG) and exits when the engine's socket goes. On stop, every front-end gets
SIGTERM and drains its requests in flight (the engine still answers them), then exits.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from pyserving.engine.errors import ConfigurationError
from pyserving.engine.events import Event, FrontendExited, FrontendStarted

log = structlog.get_logger("pyserving.frontends")

MAX_BACKOFF_S = 5.0
QUICK_EXIT_S = 1.0  # an exit this soon after a start counts as a failing start
HEARTBEAT_S = 1.0  # how often a front-end says it is alive


class FrontendStartError(ConfigurationError):
    """A front-end did not come up; the message says which and why. (A ConfigurationError:
    the server cannot run as started, and `serve` reports it as it does a bad flag.)"""


@dataclass
class _Slot:
    worker: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    starts: int = 0
    backoff_s: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_seen: float = 0.0  # its last `frontend_ready` call (monotonic)
    unresponsive: bool = False  # killed for its silence


def signal_name(returncode: int | None) -> str:
    """'SIGKILL' for a process a signal ended (a negative returncode), else ''."""
    if returncode is None or returncode >= 0:
        return ""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class FrontendSupervisor:
    """Runs `workers` front-end processes; `command(worker)` is each one's argv tail."""

    def __init__(
        self,
        workers: int,
        command: Callable[[int], Sequence[str]],
        publish: Callable[[Event], object],
        liveness_timeout_s: float = 10.0,
    ) -> None:
        """`liveness_timeout_s`: how long a front-end may stay silent before it is replaced
        (0: never)."""
        self._command = command
        self._publish = publish
        self._liveness_timeout_s = liveness_timeout_s
        self._slots = [_Slot(worker) for worker in range(workers)]
        self._watchers: set[asyncio.Task[None]] = set()
        self._liveness: asyncio.Task[None] | None = None
        self._stopping = False

    def ready(self, worker: int, pid: int) -> None:
        """A front-end says it listens (its first `frontend_ready` call), or that its loop
        still turns (every later one)."""
        if not 0 <= worker < len(self._slots):
            return
        slot = self._slots[worker]
        if slot.process is None or slot.process.pid != pid:
            return  # a replaced front-end's late call
        slot.last_seen = time.monotonic()
        if not slot.ready.is_set():
            slot.ready.set()
            self._publish(FrontendStarted(worker, pid, slot.starts - 1))
            log.info("frontend_ready", worker=worker, pid=pid, restarts=slot.starts - 1)

    async def start(self, timeout_s: float) -> None:
        """Start every front-end and wait until each listens; FrontendStartError if one
        exits first or is not ready within `timeout_s`."""
        for slot in self._slots:
            await self._spawn(slot)
        for slot in self._slots:
            await self._wait_ready(slot, timeout_s)
        for slot in self._slots:
            watcher = asyncio.create_task(self._watch(slot))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        if self._liveness_timeout_s > 0:
            self._liveness = asyncio.create_task(self._watch_liveness())

    async def _wait_ready(self, slot: _Slot, timeout_s: float) -> None:
        assert slot.process is not None
        exited = asyncio.ensure_future(slot.process.wait())
        ready = asyncio.ensure_future(slot.ready.wait())
        done, _ = await asyncio.wait(
            {exited, ready}, timeout=timeout_s, return_when="FIRST_COMPLETED"
        )
        ready.cancel()
        if slot.ready.is_set():
            exited.cancel()
            return
        if exited in done:
            code = slot.process.returncode
            await self.stop(grace_s=0)
            raise FrontendStartError(
                f"front-end {slot.worker} exited during start-up ({signal_name(code) or code}); "
                "its error is in the log above"
            )
        exited.cancel()
        await self.stop(grace_s=0)
        raise FrontendStartError(
            f"front-end {slot.worker} did not listen within {timeout_s:.0f} s; is the machine "
            "overloaded? Try fewer --workers"
        )

    async def _spawn(self, slot: _Slot) -> None:
        slot.ready.clear()
        slot.unresponsive = False
        slot.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pyserving.api.frontend",
            *self._command(slot.worker),
        )
        slot.started_at = time.monotonic()
        slot.starts += 1
        if self._stopping:  # stop() began while this one started: it stops too
            slot.process.send_signal(signal.SIGTERM)

    async def _watch(self, slot: _Slot) -> None:
        while True:
            assert slot.process is not None
            returncode = await slot.process.wait()
            restarting = not self._stopping
            self._publish(
                FrontendExited(
                    slot.worker,
                    slot.process.pid,
                    None if returncode < 0 else returncode,
                    signal_name(returncode),
                    restarting,
                    slot.unresponsive,
                )
            )
            if not restarting:
                return
            (log.warning if returncode else log.info)(
                "frontend_exited",
                worker=slot.worker,
                pid=slot.process.pid,
                exit_code=returncode,
                signal=signal_name(returncode),
            )
            if time.monotonic() - slot.started_at < QUICK_EXIT_S:
                slot.backoff_s = min(MAX_BACKOFF_S, max(0.25, slot.backoff_s * 2))
                await asyncio.sleep(slot.backoff_s)  # a crash loop must not spin the engine
            else:
                slot.backoff_s = 0.0
            if self._stopping:
                return
            await self._spawn(slot)

    async def _watch_liveness(self) -> None:
        """Kill a listening front-end silent for longer than the timeout. It must be found
        silent twice, a tick apart: between the two the engine's loop has read its socket,
        so heartbeats that waited there while the engine itself was busy count."""
        tick_s = min(HEARTBEAT_S, self._liveness_timeout_s / 2)
        suspects: set[int] = set()
        while not self._stopping:
            await asyncio.sleep(tick_s)
            now = time.monotonic()
            for slot in self._slots:
                process = slot.process
                listening = slot.ready.is_set() and process and process.returncode is None
                silent_s = now - slot.last_seen
                if not listening or silent_s <= self._liveness_timeout_s:
                    suspects.discard(slot.worker)
                elif slot.worker not in suspects:
                    suspects.add(slot.worker)
                elif process is not None and not self._stopping:
                    suspects.discard(slot.worker)
                    slot.unresponsive = True
                    log.error(
                        "frontend_unresponsive",
                        worker=slot.worker,
                        pid=process.pid,
                        silent_s=round(silent_s, 1),
                        action="killed with SIGKILL; it is started again",
                    )
                    process.kill()

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every front-end (each drains its requests in flight), SIGKILL those still
        running after `grace_s` plus a little, and wait for all of them."""
        self._stopping = True
        if self._liveness is not None:
            self._liveness.cancel()  # draining front-ends may fall silent: none is killed
        running = [s.process for s in self._slots if s.process and s.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        waits = [asyncio.ensure_future(p.wait()) for p in running]
        if waits:
            _, late = await asyncio.wait(waits, timeout=grace_s + 5.0)
            for process in running:
                if process.returncode is None:
                    log.error("frontend_killed", pid=process.pid, after_s=grace_s + 5.0)
                    process.kill()
            if late:
                await asyncio.wait(late)
        if self._watchers:
            await asyncio.gather(*self._watchers, return_exceptions=True)


def die_with_parent(parent_pid: int) -> None:
    """In a front-end: be killed when the engine dies (Linux's PR_SET_PDEATHSIG), and exit
    now if it is already gone (it died before the request took effect)."""
    import ctypes
    import os

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the engine's socket going still ends it
        pass
    if os.getppid() != parent_pid:
        raise SystemExit(f"the engine (pid {parent_pid}) is gone; a front-end serves only for it")
