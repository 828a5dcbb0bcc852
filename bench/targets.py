"""Starting and stopping what is measured: pyserving servers and the floor, as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.util import processes
from tests.util.proc_stats import cpu_seconds
from tests.util.processes import QUIET_ENV, free_port

__all__ = ["QUIET_ENV", "ROOT", "Target", "floor_target", "free_port", "pyserving_target"]


@dataclass
class Target:
    """One thing to measure: `command` listens on `port`; `event_log` holds its BatchRuns."""

    name: str
    description: str
    command: list[str]
    port: int
    log_path: Path
    event_log: Path | None = None
    env: dict[str, str] | None = None  # on top of the bench's own environment
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = processes.spawn(self.command, self.log_path, self.env)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Ready when a health check says SERVING (pyserving) or the port answers (floor)."""
        assert self.process is not None
        try:
            processes.wait_serving(
                self.address,
                self.process,
                timeout_s,
                describe=lambda: f"{self.name}: {self.log_path.read_text()[-3000:]}",
                unimplemented_is_ready=True,  # the floor has no health service
                poll_s=0.2,
            )
        except AssertionError as exc:
            raise RuntimeError(str(exc)) from None

    def cpu_seconds(self) -> float:
        """CPU time the target's process has used so far (all its threads, user + system)."""
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, timeout_s=30)

    def batch_sizes(self, window_wall: tuple[float, float]) -> list[int]:
        """Sizes of the batches this server ran inside a wall-clock window (BatchRun facts)."""
        if self.event_log is None or not self.event_log.exists():
            return []
        begin, end = window_wall
        sizes = []
        with open(self.event_log, "rb") as f:
            for line in f:
                if b'"batch_run"' not in line:
                    continue
                event = json.loads(line)
                if begin <= event["time"] <= end:
                    sizes.append(event["size"])
        return sizes

    def mean_batch(self, window_wall: tuple[float, float]) -> float | None:
        """The mean size of the batches it ran inside the window; None when it ran none."""
        sizes = self.batch_sizes(window_wall)
        return sum(sizes) / len(sizes) if sizes else None


ROOT = Path(__file__).resolve().parent.parent


def pyserving_target(
    name: str,
    description: str,
    model_base: Path,
    workdir: Path,
    *flags: str,
    env: dict[str, str] | None = None,
) -> Target:
    port = free_port()
    event_log = workdir / f"{name}.events.jsonl"
    event_log.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pyserving",
        "serve",
        f"--port={port}",
        "--model_name=mnist",
        f"--model_base_path={model_base}",
        "--file_system_poll_wait_seconds=0",
        f"--event_log={event_log}",
        "--log_level=warning",
        *flags,
    ]
    return Target(name, description, command, port, workdir / f"{name}.log", event_log, env)


def floor_target(workdir: Path, event_loop: str = "uvloop") -> Target:
    """The floor on pyserving's default loop ("floor"), or on another ("floor_asyncio")."""
    port = free_port()
    name = "floor" if event_loop == "uvloop" else f"floor_{event_loop}"
    command = [sys.executable, "-m", "bench.floor", f"--port={port}", f"--event_loop={event_loop}"]
    return Target(
        name,
        f"minimal grpc.aio server, canned reply, {event_loop} loop",
        command,
        port,
        workdir / f"{name}.log",
    )
