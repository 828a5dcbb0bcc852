"""Suite 6, crash and restart: SIGKILL the server mid-load and mid-traffic, restart it on
the same folders and event log. It serves the same versions again, the event log reads
(a torn last line is skipped), `pyserving replay` verifies it, and no sequence number
is used twice.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from pyserving.adapters.event_log import read_events
from tests.reliability.conftest import Size, report
from tests.reliability.models import AVAILABLE, config_file, write_version
from tests.util.processes import ServerProcess, run_python
from tests.util.traffic import LoadThreads
from tests.util.workers import both_modes

SLOW_LOAD_S = 2.0


def start(root: Path, index: int, workers: int) -> ServerProcess:
    return ServerProcess(
        [
            f"--model_config_file={root / 'models.config'}",
            "--file_system_poll_wait_seconds=0.2",
            f"--event_log={root / 'events.jsonl'}",
            "--event_log_fsync=never",  # a killed process loses nothing flushed to the OS
        ],
        root / f"server-{index}.log",
        workers=workers,
    )


def serving(server: ServerProcess) -> set[int]:
    try:
        return {v for v, s in server.version_states("m").items() if s == AVAILABLE}
    except grpc.RpcError:
        return set()


def kill(server: ServerProcess) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(30)
    server.stop()


class Traffic(LoadThreads):
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.ok = 0
        self.failed = 0
        self.request = predict_pb2.PredictRequest()
        self.request.model_spec.name = "m"
        self.request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
        super().__init__(1)

    def call(self, index: int) -> None:
        try:
            self.server.predict_stub.Predict(self.request, timeout=5)
            self.ok += 1
        except (grpc.RpcError, ValueError):  # the server was killed: expected here
            self.failed += 1
            time.sleep(0.01)


@both_modes
def test_killed_servers_come_back_serving_the_same_versions(
    tmp_path: Path, size: Size, workers: int
) -> None:
    root = tmp_path
    write_version(root / "m", 1)
    marker = root / "v2-load-started"
    write_version(root / "m", 2, load_sleep=SLOW_LOAD_S, started_marker=str(marker))
    config_file(root / "models.config", {"m": (root / "m", "model_version_policy { all {} }")})
    log = root / "events.jsonl"
    kills = 0
    sent = failed_at_kill = 0
    rounds = size.pick(1, 5)
    index = 0
    for _ in range(rounds):
        # Killed mid-load: version 2's load() has started and sleeps.
        marker.unlink(missing_ok=True)
        server = start(root, index := index + 1, workers)
        server.wait_for(marker.exists, timeout=120, what="version 2's load to start")
        assert 2 not in serving(server)
        kill(server)
        kills += 1

        # Restarted: the same versions serve again; then killed mid-traffic.
        server = start(root, index := index + 1, workers)
        server.wait_for(lambda s=server: serving(s) == {1, 2}, timeout=120, what="1 and 2 back")
        with Traffic(server) as traffic:
            server.wait_for(lambda t=traffic: t.ok >= 10, 30, "traffic before the kill", 0.01)
            kill(server)
            kills += 1
            time.sleep(0.3)
        assert traffic.ok > 0
        sent += traffic.ok + traffic.failed
        failed_at_kill += traffic.failed

    # A crash can tear the last line (here: as a power loss would); the next server fences it.
    with open(log, "ab") as f:
        f.write(b'{"seq": 999999, "time": 1.0, "kind": "transi')
    server = start(root, index := index + 1, workers)
    server.wait_for(lambda: serving(server) == {1, 2}, timeout=120, what="1 and 2 back")
    with Traffic(server) as traffic:
        server.wait_for(lambda: traffic.ok >= 10, 30, "traffic after the restart", 0.01)
    assert traffic.failed == 0 and traffic.ok > 0
    assert server.stop() == 0

    skipped: list[tuple[Path, int, str]] = []
    events = list(read_events(log, on_skip=lambda *s: skipped.append(s)))
    seqs = [e.seq for e in events]
    assert len(skipped) == 1  # the torn line, and nothing else
    assert len(seqs) == len(set(seqs)), "a sequence number was used twice"
    assert seqs == sorted(seqs), "sequence numbers went backwards after a restart"
    starts = [e for e in events if e.kind == "server_started"]
    assert len(starts) == 2 * rounds + 1
    replay = run_python("-m", "pyserving", "replay", "--format=json", str(log), timeout=120)
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    verdict = json.loads(replay.stdout)
    report(
        "crash_restart",
        kills=kills,
        restarts=index,
        events=len(events),
        torn_lines_skipped=len(skipped),
        requests_sent=sent,
        failed_while_killed=failed_at_kill,
        replay_verified=verdict.get("verified"),
    )
