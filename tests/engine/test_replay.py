"""Replay re-decides recorded transitions: real logs verify, tampered ones fail at their seq."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pyserving.adapters.event_log import read_events
from pyserving.engine.events import AspiredVersion, AspiredVersions, Event, LoadSucceeded
from pyserving.engine.replay import ReplayError, replay
from pyserving.engine.timeline import Point
from tests.recorded_runs import RecordedServer, read_records, write_records
from tests.servables import ConstantLoader


def replay_file(path: Path):
    return replay(read_events(path))


@pytest.fixture
def swap_log(tmp_path: Path) -> Path:
    """v1 serves, v2 replaces it, v3 fails to load, then a clean stop."""
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log, ConstantLoader(failing=["/m/3"]))
    server.aspire(1)
    server.aspire(2)
    server.aspire(2, 3)
    server.stop()
    return log


def transition_seqs(records: list[dict]) -> list[int]:
    return [r["seq"] for r in records if r["kind"] == "transition"]


def test_recorded_swap_verifies_and_explains_each_transition(swap_log: Path) -> None:
    result = replay_file(swap_log)
    assert result.verified, result.verifier.divergence
    (run,) = result.verifier.runs
    assert run.clean_stop and run.verified_transitions == 11
    spans = {
        (life.version, span.state): span for life in result.timeline.lives for span in life.spans
    }
    # v1 is unloaded because v2's load succeeded: its cause is v2's load_succeeded fact.
    unload = spans[(1, "unloading")]
    records = {r["seq"]: r for r in read_records(swap_log)}
    cause = records[unload.cause.seq]
    assert cause["kind"] == "load_succeeded" and cause["version"] == 2
    assert spans[(3, "error")].reason == "OSError: cannot read /m/3"
    (life3,) = [life for life in result.timeline.lives if life.version == 3]
    assert [(e.attempt, e.will_retry) for e in life3.load_errors] == [(1, False)]
    assert [s.version for s in result.timeline.served("m")] == [1, 2]


def test_state_at_matches_the_live_manager(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log, ConstantLoader(failing=["/m/3"]))
    server.aspire(1)
    server.aspire(1, 2, 3)
    live = server.states()
    moment = read_records(log)[-1]["seq"]
    server.aspire(4)
    server.stop()
    result = replay_file(log)
    assert result.verified
    assert result.timeline.state_at(Point(seq=moment)) == live
    assert live[("m", 3)] == "error" and live[("m", 2)] == "available"


def test_removed_transition_is_caught_at_its_seq(swap_log: Path) -> None:
    records = read_records(swap_log)
    victim = transition_seqs(records)[4]
    write_records(swap_log, [r for r in records if r["seq"] != victim])
    divergence = replay_file(swap_log).verifier.divergence
    assert divergence is not None
    assert (divergence.seq, divergence.problem) == (victim, "missing")
    expected = next(r for r in records if r["seq"] == victim)
    assert divergence.expected is not None
    assert divergence.expected.transition.dst == expected["dst"]
    assert divergence.expected.transition.version == expected["version"]


def test_removed_and_renumbered_transition_is_caught_at_its_seq(swap_log: Path) -> None:
    records = read_records(swap_log)
    victim = transition_seqs(records)[4]
    write_records(swap_log, [r for r in records if r["seq"] != victim], renumber=True)
    divergence = replay_file(swap_log).verifier.divergence
    assert divergence is not None
    # The first transition at or after the hole is where the log and the manager part.
    following = next(s for s in transition_seqs(records) if s > victim) - 1
    assert divergence.seq == following
    assert divergence.problem in ("illegal", "mismatch")


def test_inserted_illegal_transition_is_caught_at_its_seq(swap_log: Path) -> None:
    records = read_records(swap_log)
    at = transition_seqs(records)[2]  # after v1 is available
    position = next(i for i, r in enumerate(records) if r["seq"] == at)
    forged = {
        **records[position],
        "model": "m",
        "version": 1,
        "src": "available",
        "dst": "loading",
        "trigger": "start_load",
    }
    records.insert(position, forged)
    write_records(swap_log, records, renumber=True)
    divergence = replay_file(swap_log).verifier.divergence
    assert divergence is not None
    assert (divergence.seq, divergence.problem) == (at, "illegal")
    assert "not a move of the version state machine" in divergence.message


def test_legal_but_undecided_transition_is_caught(swap_log: Path) -> None:
    records = read_records(swap_log)
    at = transition_seqs(records)[2]  # v2 new -> loading: change it to v2 cancelled
    position = next(i for i, r in enumerate(records) if r["seq"] == at)
    records[position] = {**records[position], "dst": "end", "trigger": "cancel"}
    write_records(swap_log, records)
    divergence = replay_file(swap_log).verifier.divergence
    assert divergence is not None
    assert (divergence.seq, divergence.problem) == (at, "mismatch")
    assert divergence.expected is not None and divergence.expected.transition.dst == "loading"


def test_swapped_lines_are_caught_where_the_order_breaks(swap_log: Path) -> None:
    records = read_records(swap_log)
    records[4], records[5] = records[5], records[4]
    write_records(swap_log, records)
    divergence = replay_file(swap_log).verifier.divergence
    assert divergence is not None
    # The displaced seq is reported where it should have been.
    assert (divergence.seq, divergence.problem) == (records[5]["seq"], "missing")
    assert "out of order" in divergence.message


def test_an_event_repeated_later_is_out_of_order(swap_log: Path) -> None:
    records = read_records(swap_log)
    records.insert(8, records[3])
    write_records(swap_log, records)
    divergence = replay_file(swap_log).verifier.divergence
    assert divergence is not None
    assert (divergence.seq, divergence.problem) == (records[3]["seq"], "out_of_order")


def test_reordered_facts_with_renumbering_are_caught(swap_log: Path) -> None:
    records = read_records(swap_log)
    # Move v2's aspired-versions fact after its own load result: the load is unexplained.
    aspired = next(
        r
        for r in records
        if r["kind"] == "aspired_versions"
        and len(r["versions"]) == 1
        and r["versions"][0]["version"] == 2
    )
    i = records.index(aspired)
    records.insert(i + 3, records.pop(i))
    write_records(swap_log, records, renumber=True)
    divergence = replay_file(swap_log).verifier.divergence
    assert divergence is not None
    assert divergence.seq == aspired["seq"]  # v2's start_load now sits where the fact was
    assert divergence.problem == "unexplained"


def test_truncated_clean_log_is_caught(swap_log: Path) -> None:
    records = read_records(swap_log)
    last_transition = transition_seqs(records)[-1]
    kept = [r for r in records if r["seq"] != last_transition]
    write_records(swap_log, kept, renumber=True)
    divergence = replay_file(swap_log).verifier.divergence
    assert divergence is not None and divergence.problem == "unrecorded"
    assert divergence.seq == records[0]["seq"] + len(kept)  # right after the renumbered end


def test_torn_last_line_replays_and_restart_appends(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log)
    server.aspire(1)
    server.crash()
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"seq":99,"time":1.0,"kind":"transi')  # SIGKILL mid-write
    skipped: list[tuple] = []
    result = replay(read_events(log, on_skip=lambda *s: skipped.append(s)))
    assert result.verified and len(skipped) == 1
    (run,) = result.verifier.runs
    assert not run.clean_stop
    assert {(life.version, life.state) for life in result.timeline.unsettled_at_end()} == {
        (1, "available")
    }

    restarted = RecordedServer(log)  # fences off the torn line and continues the numbering
    restarted.aspire(1)
    restarted.stop()
    result = replay_file(log)
    assert result.verified, result.verifier.divergence
    assert [run.clean_stop for run in result.verifier.runs] == [False, True]
    assert [(life.version, life.state) for life in result.timeline.left_unsettled()] == [
        (1, "available")
    ]


def test_crash_with_decisions_unrecorded_is_reported_not_failed(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log)
    server.aspire(1)
    server.crash()
    records = read_records(log)
    # The process died right after writing the last fact: its transitions never made it.
    last_fact = max(i for i, r in enumerate(records) if r["kind"] == "load_succeeded")
    write_records(log, records[: last_fact + 1])
    result = replay_file(log)
    assert result.verified
    (run,) = result.verifier.runs
    assert [d.transition.dst for d in run.unrecorded] == ["available"]


def test_facts_stamped_between_a_fact_and_its_transitions_still_verify(tmp_path: Path) -> None:
    """A pool thread's fact may be stamped while the bus dispatches an earlier fact."""
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log)
    interleaved = threading.Event()

    def publish_from_another_thread(event: Event) -> None:
        if isinstance(event, AspiredVersions) and event.versions[0].version == 5:
            other = AspiredVersions(model="other", versions=(AspiredVersion(7, "/other/7"),))
            t = threading.Thread(target=server.bus.publish, args=(other,))
            t.start()
            t.join()
            interleaved.set()

    # Subscribed ahead of the manager: the other thread's fact is stamped before the
    # transitions the manager fires for this one.
    server.bus._subscribers.insert(0, publish_from_another_thread)
    server.aspire(5)
    server.settle()
    server.stop()
    assert interleaved.is_set()
    records = read_records(log)
    kinds = [(r["kind"], r.get("model")) for r in records]
    fact = kinds.index(("aspired_versions", "m"))
    assert kinds[fact + 1] == ("aspired_versions", "other")
    assert kinds[fact + 2] == ("transition", "m")
    result = replay_file(log)
    assert result.verified, result.verifier.divergence


def test_policy_comes_from_the_header(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log, policy="resource")
    server.aspire(1)
    server.aspire(2)
    server.stop()
    assert replay_file(log).verified
    records = read_records(log)
    records[0]["flags"]["aspired_version_policy"] = "availability"
    write_records(log, records)
    divergence = replay_file(log).verifier.divergence
    assert divergence is not None and divergence.problem == "mismatch"
    records[0]["flags"]["aspired_version_policy"] = "fastest"
    write_records(log, records)
    with pytest.raises(ReplayError, match="fastest"):
        replay_file(log)


def test_events_before_the_first_header_are_shown_not_verified(swap_log: Path) -> None:
    records = read_records(swap_log)
    write_records(swap_log, records[3:])  # the header's file was rotated away
    result = replay_file(swap_log)
    assert result.verified and not result.verifier.runs
    assert result.verifier.unverified_events == len(records) - 3
    assert {life.version for life in result.timeline.lives} == {1, 2, 3}


def test_a_fact_the_manager_refuses_is_recorded_as_live() -> None:
    events = [
        *read_events_from(
            [
                {"kind": "server_started", "pyserving_version": "t", "flags": {}, "models": ["m"]},
                {"kind": "load_succeeded", "model": "m", "version": 9, "duration_s": 0.1},
            ]
        )
    ]
    result = replay(events)
    assert result.verified
    assert result.verifier.runs[0].manager_errors == []  # unknown version: ignored, as live
    assert isinstance(events[1], LoadSucceeded)


def read_events_from(records: list[dict]) -> list[Event]:
    from pyserving.engine.events import from_dict

    return [from_dict({"seq": i, "time": float(i), **r}) for i, r in enumerate(records, 1)]


@pytest.fixture
def label_log(tmp_path: Path) -> Path:
    """stable on 1; a reload points stable and canary at 2 before 2 exists (stable keeps
    serving 1, canary is recorded); 2 loads and stable moves; a reload drops canary; v1
    unloads; a clean stop."""
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log)
    server.aspire(1)
    server.set_labels(stable=1)
    server.set_labels(stable=2, canary=2)
    server.aspire(1, 2)
    server.set_labels(stable=2)
    server.aspire(2)
    server.stop()
    return log


def test_recorded_label_moves_verify(label_log: Path) -> None:
    result = replay_file(label_log)
    assert result.verified, result.verifier.divergence
    (run,) = result.verifier.runs
    records = {r["seq"]: r for r in read_records(label_log)}
    moves = [r for r in records.values() if r["kind"] == "label_moved"]
    assert [(m["label"], m["previous"], m["version"]) for m in moves] == [
        ("stable", None, 1),
        ("canary", None, 2),
        ("stable", 1, 2),
        ("canary", 2, None),
    ]
    assert run.verified_label_moves == len(moves)
    # stable's move to 2 waited for version 2's load: the transition to available caused it.
    (caused,) = [s for s in result.timeline.lives if s.version == 2]
    available = next(span for span in caused.spans if span.state == "available")
    stable_move = next(m for m in moves if m["label"] == "stable" and m["version"] == 2)
    assert stable_move["seq"] > available.since_seq
    assert "version 2 available" in stable_move["reason"]


def test_a_tampered_label_move_is_caught_at_its_seq(label_log: Path) -> None:
    records = read_records(label_log)
    moved = [r for r in records if r["kind"] == "label_moved" and r["label"] == "stable"][-1]
    moved["version"] = 1  # the log claims stable stayed on 1
    write_records(label_log, records)
    divergence = replay_file(label_log).verifier.divergence
    assert divergence is not None and divergence.problem == "mismatch"
    assert divergence.seq == moved["seq"]


def test_a_label_move_no_config_explains_is_caught(label_log: Path) -> None:
    records = read_records(label_log)
    index = next(i for i, r in enumerate(records) if r["kind"] == "version_labels_set")
    removed = records.pop(index)
    write_records(label_log, records, renumber=True)
    divergence = replay_file(label_log).verifier.divergence
    assert divergence is not None and divergence.problem == "unexplained"
    assert divergence.seq == removed["seq"]  # the move it caused now sits there


def test_a_label_move_left_out_of_a_clean_log_is_caught(label_log: Path) -> None:
    records = read_records(label_log)
    last_move = max(i for i, r in enumerate(records) if r["kind"] == "label_moved")
    del records[last_move]
    write_records(label_log, records, renumber=True)
    divergence = replay_file(label_log).verifier.divergence
    assert divergence is not None and divergence.problem == "unrecorded"


def with_batch_runs(records: list[dict], every: int = 2, burst: int = 3) -> list[dict]:
    """The records with `burst` BatchRun records after every `every`-th one, renumbered."""
    out: list[dict] = []
    for index, record in enumerate(records):
        out.append(record)
        if index % every == 1 and record["kind"] != "server_stopped":
            out.extend(
                {"seq": 0, "time": record["time"], "kind": "batch_run", "model": "m",
                 "version": 1, "signature": "s", "size": 2, "padded_size": 2,
                 "oldest_wait_s": 0.001}
                for _ in range(burst)
            )  # fmt: skip
    return [{**r, "seq": i} for i, r in enumerate(out, start=out[0]["seq"])]


def tampered(records: list[dict], how: str) -> list[dict]:
    batch = [i for i, r in enumerate(records) if r["kind"] == "batch_run"]
    records = [dict(r) for r in records]
    if how == "removed":  # a gap inside a burst
        del records[batch[4]]
    elif how == "swapped":  # two BatchRuns out of order
        records[batch[1]], records[batch[2]] = records[batch[2]], records[batch[1]]
    elif how == "repeated":  # a BatchRun's seq again, later
        records[batch[7]]["seq"] = records[batch[3]]["seq"]
    return records


@pytest.mark.parametrize("how", ["intact", "removed", "swapped", "repeated"])
def test_skimmed_batch_runs_replay_as_decoded_ones_do(swap_log: Path, how: str) -> None:
    from pyserving.adapters.event_log import read_log_set
    from pyserving.engine.replay import SKIMMED

    write_records(swap_log, tampered(with_batch_runs(read_records(swap_log)), how))
    decoded = replay(read_events(swap_log))
    skimmed = replay(read_log_set([swap_log], skim=SKIMMED))
    assert skimmed.verified == decoded.verified == (how == "intact")
    assert skimmed.verifier.divergence == decoded.verifier.divergence
    assert skimmed.verifier.events == decoded.verifier.events
    assert [r.to_dict() for r in skimmed.verifier.runs] == [
        r.to_dict() for r in decoded.verifier.runs
    ]
    assert (skimmed.timeline.last_seq, skimmed.timeline.last_time) == (
        decoded.timeline.last_seq,
        decoded.timeline.last_time,
    )
    assert sum(r.batch_runs for r in skimmed.verifier.runs) > 0
