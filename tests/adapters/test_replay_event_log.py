"""The event log's rotation, durability policy and reading of a rotated set, for replay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyserving.adapters.event_log import (
    EventLogWriter,
    last_sequence,
    log_files,
    read_events,
    read_log_set,
    rotated_set,
)
from pyserving.engine.events import ShutdownRequested
from pyserving.engine.replay import replay
from tests.recorded_runs import RecordedServer


def write_shutdowns(log: Path, count: int, reason: str = "x", **rotation: int) -> None:
    """`count` events (seq 1..count) through a writer rotating as `rotation` says."""
    writer = EventLogWriter(log, **rotation)
    for i in range(1, count + 1):
        writer(ShutdownRequested(reason=reason).stamped(i, float(i)))
    writer.close()


def test_rotation_keeps_a_bounded_set_that_replays_in_order(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log, max_bytes=1500, backups=50)
    for version in range(1, 8):
        server.aspire(version)
    server.stop()
    files = rotated_set(log)
    assert len(files) > 3, "the scenario should have rotated several times"
    assert all(f.stat().st_size <= 1500 for f in files)
    assert files[-1] == log and files[0].name == f"events.jsonl.{len(files) - 1}"
    seqs = [e.seq for e in read_log_set(files)]
    assert seqs == list(range(1, len(seqs) + 1))
    result = replay(read_log_set(log_files([log])))
    assert result.verified, result.verifier.divergence
    assert result.verifier.runs[0].verified_transitions == 7 * 4


def test_rotation_drops_the_oldest_beyond_the_kept_count(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_shutdowns(log, 40, max_bytes=300, backups=2)
    assert [f.name for f in rotated_set(log)] == [
        "events.jsonl.2",
        "events.jsonl.1",
        "events.jsonl",
    ]
    seqs = [e.seq for e in read_log_set(rotated_set(log))]
    assert seqs[-1] == 40 and seqs == list(range(seqs[0], 41)) and seqs[0] > 1


def test_restart_continues_numbering_across_a_fresh_rotation(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_shutdowns(log, 29, max_bytes=300, backups=3)
    newest_backup = [e.seq for e in read_events(rotated_set(log)[-2])]
    log.write_bytes(b"")  # as if the server died right after a rotation
    assert last_sequence(log) == newest_backup[-1] > 0


def test_last_sequence_reads_the_tail_of_a_large_log(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_shutdowns(log, 3000, reason="padding " * 5)
    assert log.stat().st_size > 64 * 1024
    with open(log, "ab") as f:
        f.write(b'{"seq":3001,"ti')  # torn
    assert last_sequence(log) == 3000


def test_log_files_orders_arguments_by_their_first_seq(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_shutdowns(log, 19, max_bytes=300, backups=5)
    backwards = [str(p) for p in rotated_set(log)][::-1]
    assert log_files(backwards) == rotated_set(log)  # each named once, oldest first
    with pytest.raises(FileNotFoundError, match="no event log"):
        log_files([tmp_path / "missing.jsonl"])


@pytest.mark.parametrize(("policy", "syncs_per_event"), [("always", 1), ("never", 0)])
def test_fsync_policy_syncs_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, syncs_per_event: int
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    writer = EventLogWriter(tmp_path / "events.jsonl", fsync=policy)
    for i in range(1, 11):
        writer(ShutdownRequested(reason="x").stamped(i, float(i)))
    assert len(calls) == 10 * syncs_per_event
    writer.close()
    assert [e.seq for e in read_events(tmp_path / "events.jsonl")] == list(range(1, 11))


def test_interval_fsync_syncs_in_the_background_only_when_dirty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    writer = EventLogWriter(tmp_path / "events.jsonl", fsync="interval", fsync_interval_s=3600)
    for i in range(1, 101):
        writer(ShutdownRequested(reason="x").stamped(i, float(i)))
    assert calls == []  # nothing on the bus thread
    writer.sync()  # what the background thread does every interval
    writer.sync()  # nothing new: no second sync
    assert len(calls) == 1
    writer.close()
