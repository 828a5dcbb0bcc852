"""Events round-trip through JSON; the bus delivers one total order to every subscriber."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pyserving.engine.bus import EventBus
from pyserving.engine.events import (
    EVENT_TYPES,
    AspiredVersion,
    AspiredVersions,
    BatchRun,
    ConfigReloaded,
    Event,
    FrontendExited,
    FrontendStarted,
    GateResult,
    LabelMoved,
    LoadFailed,
    LoadSucceeded,
    PromotionGatesSet,
    PromotionRequested,
    PromotionVerdict,
    ServerStarted,
    ServerStopped,
    ShutdownRequested,
    Transition,
    UnloadFinished,
    VersionForgotten,
    VersionLabelsSet,
    VersionQuiesced,
    WarmupFinished,
    decode,
    encode,
    from_dict,
)

# Every kind as the event log wrote it before the generic codec (json.dumps per field).
V1_LOG = Path(__file__).parents[1] / "data" / "event_log_v1.jsonl"

SAMPLES: list[Event] = [
    ServerStarted(
        pyserving_version="0.1.0", flags={"port": 9000}, models=("mnist",), config_digest="ab12"
    ),
    AspiredVersions(model="mnist", versions=(AspiredVersion(1, "/m/1"), AspiredVersion(2, "/m/2"))),
    LoadSucceeded(model="mnist", version=2, duration_s=0.5),
    LoadSucceeded(model="mnist", version=3, duration_s=0.5, fingerprint="sha256:ab12"),
    WarmupFinished(model="mnist", version=2, records=3, iterations=2, duration_s=0.2),
    WarmupFinished(
        model="mnist", version=3, records=0, iterations=1, duration_s=0.0, error="record 0: x"
    ),
    LoadFailed(model="mnist", version=3, error="bad", attempt=1, will_retry=True, duration_s=0.1),
    VersionQuiesced(model="mnist", version=1, in_flight=2, drain_s=0.3),
    UnloadFinished(model="mnist", version=1, duration_s=0.01),
    VersionForgotten(model="mnist", version=1),
    ShutdownRequested(reason="SIGTERM"),
    ServerStopped(reason="received SIGTERM"),
    ConfigReloaded(origin="/etc/models.config", models=("a", "b"), added=("b",), removed=("c",)),
    VersionLabelsSet(model="mnist", labels={"stable": 1, "canary": 2}),
    LabelMoved(model="mnist", label="canary", version=2, previous=1, reason="2 available"),
    PromotionGatesSet(gates={"mnist": ("stable", "canary")}),
    PromotionRequested(model="mnist", label="stable", from_version=1, to_version=2),
    PromotionVerdict(
        model="mnist",
        label="stable",
        from_version=1,
        to_version=2,
        passed=False,
        reason="outputs: output 'y': max_abs_diff 0.5, wanted <= 0.001",
        gates=(GateResult("outputs", False, {"requests": 24.0, "y.max_abs_diff": 0.5}, "x"),),
        duration_s=0.25,
    ),
    Transition(model="mnist", version=1, src="new", dst="loading", trigger="start_load"),
    BatchRun(model="mnist", version=1, signature="s", size=3, padded_size=4, oldest_wait_s=0.001),
    FrontendStarted(worker=1, pid=4242, restarts=1),
    FrontendExited(worker=1, pid=4242, exit_code=None, signal="SIGKILL", restarting=True),
]


def test_every_event_kind_has_a_sample() -> None:
    assert {type(e) for e in SAMPLES} == set(EVENT_TYPES.values())


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.kind)
def test_json_round_trip(event: Event) -> None:
    stamped = event.stamped(seq=42, time=1234.5)
    line = encode(stamped)  # what the event log writes, one line per event
    assert b"\n" not in line
    import json

    record = json.loads(line)
    assert record["seq"] == 42 and record["kind"] == event.kind
    assert from_dict(record) == stamped


def test_a_load_logged_before_fingerprints_reads_with_an_empty_one() -> None:
    record = {"seq": 3, "time": 1.0, "kind": "load_succeeded", "model": "m", "version": 1}
    event = from_dict({**record, "duration_s": 0.5})
    assert event == LoadSucceeded(model="m", version=1, duration_s=0.5, seq=3, time=1.0)
    assert event.fingerprint == ""


def test_logs_written_before_the_generic_codec_read_and_write_the_same() -> None:
    lines = V1_LOG.read_bytes().splitlines()
    decoded = [decode(line) for line in lines]
    # The same bytes back, but for fields added since, which come back at their defaults.
    added_since = {
        "batch_run": {"task_sizes": [], "task_waits_s": [], "inputs": 0},
        "load_succeeded": {"fingerprint": ""},
    }
    for event, line in zip(decoded, lines, strict=True):
        added = added_since.get(event.kind, {})
        if not added:
            assert encode(event) == line
            continue
        record = json.loads(encode(event))
        assert {name: record.pop(name) for name in added} == added
        assert record == json.loads(line)
    assert [e.seq for e in decoded] == list(range(1, len(lines) + 1))
    for event in decoded:  # each is one of the samples, as it was written
        assert event.stamped(seq=0, time=0.0) in SAMPLES, event
    assert len({e.kind for e in decoded}) == 13  # every kind there was then


@pytest.mark.parametrize(
    "line",
    [b'{"seq":1,"time":0,"kind":"load_succeeded","model":"m","version":"9","duration_s":1}',
     b'{"seq":1,"time":0,"kind":"load_succeeded","model":"m"}',
     b'{"seq":1,"time":0,"kind":"load_succ',
     b'[1, 2]'],
    ids=["wrong type", "missing field", "torn", "not an object"],
)  # fmt: skip
def test_a_record_that_does_not_fit_is_a_value_error(line: bytes) -> None:
    with pytest.raises(ValueError):
        decode(line)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        decode(b'{"seq":1,"time":0,"kind":"nope"}')
    with pytest.raises(ValueError, match="unknown event kind"):
        from_dict({"kind": "nope", "seq": 1, "time": 0})


def test_bus_gives_every_subscriber_the_same_total_order() -> None:
    bus = EventBus(first_seq=10)
    seen_a: list[int] = []
    seen_b: list[int] = []
    bus.subscribe(lambda e: seen_a.append(e.seq))
    bus.subscribe(lambda e: seen_b.append(e.seq))
    bus.start()

    def publisher(n: int) -> None:
        for i in range(200):
            bus.publish(ShutdownRequested(reason=f"{n}-{i}"))

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bus.wait_idle(timeout=10)
    bus.stop()
    assert seen_a == seen_b == list(range(10, 10 + 800))


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = EventBus()
    seen: list[int] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append(e.seq))
    bus.start()
    bus.publish(ShutdownRequested(reason="x"))
    bus.publish(ShutdownRequested(reason="y"))
    assert bus.wait_idle(timeout=5)
    bus.stop()
    assert seen == [1, 2]
