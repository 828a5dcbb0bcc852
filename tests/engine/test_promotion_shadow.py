"""The shadow gates (outputs by max_abs_diff or top-k agreement, p99 latency, the time
bound) on real `python`-platform versions: a classifier whose scores a per-version
config skews, so two versions can agree on every top class while their scores differ."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs
from tensorflow_serving.apis import prediction_log_pb2

from pyserving.adapters.loaders.python_loader import PythonLoader, PythonServable
from pyserving.adapters.request_log.tfrecord import frame
from pyserving.api.cli import main
from pyserving.api.envelope import tensor_codec
from pyserving.engine.promotion import PromotionJudge
from pyserving.engine.promotion_gates import (
    GateConfig,
    OutputRule,
    RecordedRequest,
    run_gates,
    verdict,
)
from pyserving.engine.servable_map import ServableHandle
from tests.util.python_models import write_python_version

CLASSIFIER = """
import numpy as np

SIGNATURES = {
    "serving_default": {
        "inputs": {"x": ("float32", [None, 3])},
        "outputs": {"scores": ("float32", [None, 3])},
    },
}


def load(path):
    import json, os
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def predict(state, inputs):
    x = inputs["x"]
    scores = x * state["scale"]
    if state["swap"]:
        scores = scores[:, ::-1]
    return {"scores": scores.astype(np.float32)}
"""

REQUESTS = [
    RecordedRequest(
        "serving_default", {"x": np.array([[0.1, 0.5, 0.2], [0.7, 0.2, 0.1]], np.float32)}
    ),
    RecordedRequest("serving_default", {"x": np.array([[0.3, 0.3, 0.9]], np.float32)}),
    RecordedRequest("other", {"x": np.zeros((1, 3), np.float32)}),  # the old version lacks it
]


def version(tmp_path: Path, n: int, scale: float = 1.0, swap: bool = False) -> PythonServable:
    folder = write_python_version(tmp_path / "m", n, CLASSIFIER, {"scale": scale, "swap": swap})
    return PythonLoader().load(str(folder))


def config(**fields) -> GateConfig:
    return GateConfig(model="m", label="stable", request_files=("recorded",), **fields)


def test_scaled_scores_fail_max_abs_diff_but_keep_every_top_class(tmp_path: Path) -> None:
    old, new = version(tmp_path, 1), version(tmp_path, 2, scale=1.5)
    results = run_gates(config(), old, new, lambda: REQUESTS)
    assert [r.gate for r in results] == ["signature", "outputs"]
    outputs = results[1]
    assert not outputs.passed
    assert outputs.figures["scores.max_abs_diff"] == pytest.approx(0.45, rel=1e-5)
    assert outputs.figures["requests"] == 2 and outputs.figures["skipped"] == 1
    top_1 = config(outputs={"scores": OutputRule(top_k=1)})
    (_, agreed) = run_gates(top_1, old, new, lambda: REQUESTS)
    assert agreed.passed and agreed.figures["scores.top_1_agreement"] == 1.0


def test_swapped_classes_fail_top_k_agreement(tmp_path: Path) -> None:
    old, new = version(tmp_path, 1), version(tmp_path, 2, swap=True)
    rule = config(outputs={"scores": OutputRule(top_k=1, min_agreement=0.5)})
    (_, outputs) = run_gates(rule, old, new, lambda: REQUESTS)
    # Row 1's best class (1) is still 1 reversed; rows 2 and 3 move: 1 of 3 agrees.
    assert outputs.figures["scores.top_1_agreement"] == pytest.approx(1 / 3)
    assert not outputs.passed and "wanted >= 0.5" in outputs.reason


def test_a_gate_past_its_time_bound_fails_and_says_how_far_it_got(tmp_path: Path) -> None:
    old, new = version(tmp_path, 1), version(tmp_path, 2)
    ticks = itertools.count()  # a clock that moves one second each time it is read
    rests: list[float] = []
    results = run_gates(
        config(time_bound_s=12.0), old, new, lambda: REQUESTS * 4, lambda: next(ticks), rests.append
    )
    passed, reason = verdict(results)
    assert not passed
    assert "the time bound (12s) passed after 4 of 12 requests" in reason
    # Each call takes one tick, each request two; at the default share of 0.5 the gate
    # rests as long as they took. Three were compared (the fourth record was skipped).
    assert rests == [2.0, 2.0, 2.0]


def test_the_gate_rests_to_keep_its_cpu_share(tmp_path: Path) -> None:
    old, new = version(tmp_path, 1), version(tmp_path, 2)
    ticks = itertools.count()
    rests: list[float] = []
    run_gates(
        config(max_cpu_share=0.25),
        old,
        new,
        lambda: REQUESTS[:2],
        lambda: next(ticks),
        rests.append,
    )
    assert rests == [6.0, 6.0]  # 2 seconds of calls, then 3 times that at rest
    rests.clear()
    run_gates(
        config(max_cpu_share=1.0), old, new, lambda: REQUESTS[:2], lambda: next(ticks), rests.append
    )
    assert rests == []


def test_the_same_answers_pass_and_are_timed(tmp_path: Path) -> None:
    old, new = version(tmp_path, 1), version(tmp_path, 2)
    results = run_gates(config(p99_ratio=1e6), old, new, lambda: REQUESTS)
    assert verdict(results)[0], results
    latency = results[-1]
    assert latency.gate == "latency" and latency.figures["old_p99_ms"] > 0


def test_no_comparable_request_fails_the_gate(tmp_path: Path) -> None:
    old, new = version(tmp_path, 1), version(tmp_path, 2)
    (_, outputs) = run_gates(config(), old, new, lambda: REQUESTS[2:])
    assert not outputs.passed and "no recorded request could be compared" in outputs.reason


def judge(tmp_path: Path, **fields) -> tuple[PromotionJudge, ServableHandle, ServableHandle]:
    gates = {("m", "stable"): config(**fields)}
    old = ServableHandle("m", 1, version(tmp_path, 1))
    new = ServableHandle("m", 2, version(tmp_path, 2, scale=1.5))
    return PromotionJudge(gates, lambda _: REQUESTS), old, new


def test_the_judge_holds_both_versions_while_it_runs_and_says_why(tmp_path: Path) -> None:
    promotion, old, new = judge(tmp_path, outputs={"scores": OutputRule(top_k=1)})
    assert promotion.gated() == {"m": ("stable",)}
    with capture_logs() as logs:
        verdict = promotion.judge("stable", old, new)
    assert [e for e in logs if e["event"] == "first_request"] == []  # a gate is no request
    assert (verdict.model, verdict.label, verdict.from_version, verdict.to_version) == (
        "m",
        "stable",
        1,
        2,
    )
    assert verdict.passed and [g.gate for g in verdict.gates] == ["signature", "outputs"]
    assert old.in_flight == 0 and new.in_flight == 0  # released
    old.retire_and_wait(timeout=1)
    refused = promotion.judge("stable", old, new)
    assert not refused.passed and "stopped serving" in refused.reason
    assert new.in_flight == 0


def test_a_stopping_server_ends_a_gate_at_its_next_rest(tmp_path: Path) -> None:
    promotion, old, new = judge(tmp_path)
    stopping = threading.Event()
    stopping.set()
    verdict = promotion.judge("stable", old, new, stopping)
    assert not verdict.passed and "stopped after 1 of 3 requests" in verdict.reason


def recorded_file(path: Path) -> Path:
    """The REQUESTS as the request log writes them: framed PredictionLog records."""
    with open(path, "wb") as stream:
        for request in REQUESTS:
            record = prediction_log_pb2.PredictionLog()
            logged = record.predict_log.request
            logged.model_spec.signature_name = request.signature
            for name, array in request.inputs.items():
                tensor_codec.encode(np.asarray(array), logged.inputs[name])
            stream.write(frame(record.SerializeToString()))
    return path


def test_compare_runs_the_gates_file_rules_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_python_version(tmp_path / "m", 1, CLASSIFIER, {"scale": 1.0, "swap": False})
    new = write_python_version(tmp_path / "m", 2, CLASSIFIER, {"scale": 1.5, "swap": False})
    recorded = recorded_file(tmp_path / "requests.tfrecord")
    gates = tmp_path / "gates.toml"
    gates.write_text(
        f'[[gate]]\nmodel = "m"\nlabel = "stable"\nrequests = ["{recorded}"]\n'
        "[gate.outputs.scores]\ntop_k = 1\n"
    )
    base = ["compare", str(old), str(new), "--platform=python"]
    by_file = [*base, f"--gates_file={gates}", "--model=m", "--label=stable"]
    assert main(by_file) == 0
    shown = capsys.readouterr().out
    assert "scores.top_1_agreement=1" in shown and "requests=2, skipped=1" in shown
    assert main([*base, f"--requests={recorded}"]) == 1  # max_abs_diff by default
    assert "scores.max_abs_diff=0.45" in capsys.readouterr().out
    assert main([*base[:-1], f"--gates_file={gates}", "--model=m", "--label=canary"]) == 2
    assert "has no gate for --model 'm' --label 'canary' (it has: m/stable)" in (
        capsys.readouterr().err
    )
    assert main(["compare", str(old), str(tmp_path / "absent"), "--platform=python"]) == 2
    assert "cannot load" in capsys.readouterr().err
