"""Property: whatever facts a real manager is fed, its log replays to the states it had."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyserving.adapters.event_log import read_events
from pyserving.engine.replay import replay
from pyserving.engine.timeline import Point
from tests.recorded_runs import RecordedServer, read_records
from tests.servables import ConstantLoader

VERSIONS = st.integers(min_value=1, max_value=5)
STEP = st.one_of(
    st.tuples(st.just("aspire"), st.sampled_from(["m", "n"]), st.frozensets(VERSIONS, max_size=4)),
    st.tuples(st.just("restart"), st.sampled_from(["clean", "crash"]), st.just(frozenset())),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(STEP, min_size=1, max_size=12),
    failing=st.frozensets(VERSIONS, max_size=3),
    policy=st.sampled_from(["availability", "resource"]),
    retries=st.integers(min_value=0, max_value=2),
    end=st.sampled_from(["clean", "crash"]),
)
def test_random_runs_replay_to_the_live_states(
    steps: list[tuple[str, str, frozenset[int]]],
    failing: frozenset[int],
    policy: str,
    retries: int,
    end: str,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "events.jsonl"
        broken = [f"/{model}/{v}" for model in ("m", "n") for v in failing]

        def start() -> RecordedServer:
            return RecordedServer(
                log,
                ConstantLoader(failing=broken),
                policy=policy,
                max_num_load_retries=retries,
                models=("m", "n"),
            )

        server = start()
        checkpoints: list[tuple[int, dict]] = []
        for kind, arg, versions in steps:
            if kind == "aspire":
                server.aspire(*sorted(versions), model=arg)
                checkpoints.append((read_records(log)[-1]["seq"], server.states()))
            else:
                server.stop() if arg == "clean" else server.crash()
                server = start()
        server.stop() if end == "clean" else server.crash()
        final_seq = read_records(log)[-1]["seq"]

        result = replay(read_events(log))
        assert result.verified, result.verifier.divergence
        for seq, live in checkpoints:
            assert result.timeline.state_at(Point(seq=seq)) == live
        if end == "clean":
            assert set(result.timeline.state_at(Point(seq=final_seq)).values()) <= {"end", "error"}
