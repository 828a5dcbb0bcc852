"""Figures of a live process read from /proc: memory, threads, CPU time.

Apart from tests/util/processes.py (which imports TensorFlow through tensorflow_serving) so
that lean processes, such as the transport bench's client, can use them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessFigures:
    rss_kib: int
    threads: int

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024


def process_figures(pid: int) -> ProcessFigures:
    """VmRSS and thread count of a live process (this one too: os.getpid()), from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return ProcessFigures(int(fields["VmRSS"].split()[0]), int(fields["Threads"]))


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (all its threads, user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int, contains: str = "") -> list[int]:
    """The live children of `pid` whose command line contains `contains`, by pid, read from
    every /proc/*/stat's parent pid (no CONFIG_PROC_CHILDREN needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != pid:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue  # it exited while we looked
        if contains in command:
            found.append(int(entry.name))
    return sorted(found)


def frontend_pids(engine_pid: int) -> list[int]:
    """The front-end processes (`--workers`) an engine runs now."""
    return child_pids(engine_pid, "pyserving.api.frontend")
