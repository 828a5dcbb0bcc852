"""The promotion gates' pure parts (signature compatibility, output comparison, the gates
file) and the label keeper's side: a gated label stays on its serving version until a
passing verdict for exactly that move. Servers and SavedModels: tests/e2e/
test_promotion_gates_e2e.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyserving.adapters.promotion_config import PromotionConfigError, load_promotion_gates
from pyserving.engine.events import Event, LabelMoved, PromotionRequested, PromotionVerdict
from pyserving.engine.map_writer import ServingMapWriter
from pyserving.engine.promotion_gates import (
    OutputRule,
    latency_gate,
    max_abs_diff,
    signature_problems,
    top_k_agreement,
    verdict,
)
from pyserving.engine.servable import Signature, TensorSpec
from pyserving.engine.servable_map import ServableHandle, ServableMap
from tests.servables import ConstantServable

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def signature(outputs: dict[str, tuple[np.dtype, tuple]], x_shape=(None,)) -> dict[str, Signature]:
    return {
        "serving_default": Signature(
            "serving_default",
            "tensorflow/serving/predict",
            {"x": TensorSpec("x", F32, x_shape)},
            {name: TensorSpec(name, dtype, shape) for name, (dtype, shape) in outputs.items()},
        )
    }


OLD = signature({"y": (F32, (None, 3))})


def test_signature_gate_names_each_missing_or_changed_tensor() -> None:
    assert signature_problems(OLD, signature({"y": (F32, (None, 3)), "extra": (F32, ())})) == []
    assert signature_problems(OLD, signature({"y": (F32, (2, None))})) == []  # open dims fit
    assert signature_problems(OLD, signature({"z": (F32, (None, 3))})) == [
        "'serving_default' output 'y' is missing"
    ]
    assert signature_problems(OLD, signature({"y": (F64, (None, 3))})) == [
        "'serving_default' output 'y' is float64, was float32"
    ]
    assert signature_problems(OLD, signature({"y": (F32, (None, 4))})) == [
        "'serving_default' output 'y' has shape [-1,4], was [-1,3]"
    ]
    assert signature_problems(OLD, signature({"y": (F32, (None, 3))}, x_shape=(None, 1))) == [
        "'serving_default' input 'x' has shape [-1,1], was [-1]"
    ]
    assert signature_problems(OLD, {}) == ["signature 'serving_default' is missing"]


def test_outputs_compare_by_largest_difference_or_top_k_classes() -> None:
    old = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], np.float32)
    assert max_abs_diff(old, old + 0.25) == pytest.approx(0.25)
    assert max_abs_diff(old, old[:1]) == float("inf")  # shapes differ
    assert max_abs_diff(np.array([b"a"]), np.array([b"b"])) == float("inf")
    reordered = np.array([[0.2, 0.6, 0.1], [0.1, 0.3, 0.6]], np.float32)
    assert top_k_agreement(old, reordered, 1) == 0.5  # row 2's best class changed
    assert top_k_agreement(old, reordered, 3) == 1.0


def test_latency_gate_judges_the_p99_ratio() -> None:
    fast, slow = [0.001] * 50, [0.01] * 50
    assert latency_gate(fast, fast, 2.0).passed
    failed = latency_gate(fast, slow, 2.0)
    assert not failed.passed and failed.figures["ratio"] == pytest.approx(10.0)
    assert "10x" in failed.reason
    assert not latency_gate([], [], 2.0).passed


def test_the_verdict_passes_only_when_every_gate_ran_and_passed() -> None:
    assert verdict([]) == (False, "no gate is configured to run")
    assert verdict([latency_gate([0.001], [0.001], 2.0)])[0]
    passed, reason = verdict([latency_gate([0.001], [0.001], 2.0), latency_gate([1], [9], 2)])
    assert not passed and reason.startswith("latency: p99")


def test_the_gates_file_gives_each_label_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "gates.toml"
    path.write_text(
        '[[gate]]\nmodel = "m"\nlabel = "stable"\nrequests = ["/logs/*.tfrecord"]\n'
        "max_abs_diff = 0.01\np99_ratio = 1.5\n[gate.outputs.scores]\ntop_k = 2\n"
    )
    config = load_promotion_gates(str(path))[("m", "stable")]
    assert config.request_files == ("/logs/*.tfrecord",) and config.p99_ratio == 1.5
    assert config.rule("y") == OutputRule(max_abs_diff=0.01)
    assert config.rule("scores") == OutputRule(max_abs_diff=0.01, top_k=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[gate]]\nlabel = "s"\n', "gate 1: 'model' is required"),
        ('[[gate]]\nmodel = "m"\nlabel = "s"\ntolerance = 1\n', "unknown field 'tolerance'"),
        ('[[gate]]\nmodel = "m"\nlabel = "s"\np99_ratio = 2\n', "'p99_ratio' needs 'requests'"),
        (
            '[[gate]]\nmodel = "m"\nlabel = "s"\nrequests = ["f"]\nmax_requests = 0\n',
            "(m/s): 'max_requests' must be a number >= 1; got 0",
        ),
        (
            '[[gate]]\nmodel = "m"\nlabel = "s"\nrequests = ["f"]\n[gate.outputs.y]\nk = 1\n',
            "output 'y': unknown field 'k'",
        ),
        ("[[gate]\n", "not TOML"),
    ],
)
def test_a_bad_gates_file_is_refused_naming_the_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "gates.toml"
    path.write_text(text)
    with pytest.raises(PromotionConfigError) as caught:
        load_promotion_gates(str(path))
    assert str(path) in str(caught.value) and message in str(caught.value)


class Keeper:
    """The serving map's writer over a real map, with gates on label `stable` of `m`."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.asked: list[tuple[str, int, int]] = []
        self.map = ServableMap()
        self.writer = ServingMapWriter(self.map, self.published.append)
        self.writer.set_gates({"m": ["stable"]})
        self.writer.on_promotion = lambda label, old, new: self.asked.append(
            (label, old.version, new.version)
        )

    def serve(self, *versions: int) -> None:
        for version in versions:
            self.writer.add(ServableHandle("m", version, ConstantServable(version)))

    def stable(self) -> int | None:
        return self.map.labels("m").get("stable")

    def verdict(self, to: int, passed: bool) -> None:
        self.writer.verdict(
            PromotionVerdict(
                model="m", label="stable", from_version=1, to_version=to, passed=passed, reason=""
            )
        )


def test_a_gated_label_stays_until_a_passing_verdict_for_that_move() -> None:
    keeper = Keeper()
    keeper.serve(1, 2, 3)
    keeper.writer.set_labels("m", {"stable": 1, "canary": 1})
    assert keeper.stable() == 1  # a first pointing has nothing to compare with: not gated
    keeper.writer.set_labels("m", {"stable": 2, "canary": 2})
    assert keeper.stable() == 1 and keeper.map.labels("m")["canary"] == 2  # canary is ungated
    assert keeper.asked == [("stable", 1, 2)]
    requested = [e for e in keeper.published if isinstance(e, PromotionRequested)]
    assert [(e.from_version, e.to_version) for e in requested] == [(1, 2)]
    keeper.verdict(3, passed=True)  # not the move asked for: ignored
    assert keeper.stable() == 1
    keeper.verdict(2, passed=False)
    assert keeper.stable() == 1
    keeper.writer.set_labels("m", {"stable": 2, "canary": 2})  # the same wish: not re-judged
    assert len(keeper.asked) == 1
    keeper.writer.set_labels("m", {"stable": 3, "canary": 2})
    assert keeper.asked[-1] == ("stable", 1, 3)
    keeper.verdict(3, passed=True)
    assert keeper.stable() == 3
    moved = [e for e in keeper.published if isinstance(e, LabelMoved) and e.label == "stable"]
    assert (moved[-1].previous, moved[-1].version) == (1, 3)
    assert moved[-1].reason.startswith("promotion gates passed")


def test_a_gated_label_whose_version_left_follows_its_config() -> None:
    keeper = Keeper()
    keeper.serve(1, 2)
    keeper.writer.set_labels("m", {"stable": 1})
    keeper.writer.set_labels("m", {"stable": 2})
    assert keeper.stable() == 1
    keeper.writer.remove("m", 1)  # nothing left to compare with: the label cannot stay
    assert keeper.stable() == 2
