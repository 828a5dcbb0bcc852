"""The promotion gates as pure functions: does a new version answer like the one a label
points at? One copy for the server (engine/promotion.py runs it on the load pool before a
gated label moves) and for `pyserving compare` (the same gates offline, for CI).

- **signature**: every signature, input and output the old version has is in the new
  one, with the same dtype and a compatible shape (same rank; a dimension may differ
  only where one side leaves it open);
- **outputs**: recorded requests run on both versions; each output is compared by its
  rule: the largest absolute difference, or how many rows agree on their top-k classes;
- **latency**: the new version's p99 over those requests, as a ratio of the old one's.

The models run through the `Servable` interface, so nothing here imports TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pyserving.engine.events import GateResult
from pyserving.engine.servable import Servable, Signature, TensorSpec

SIGNATURE, OUTPUTS, LATENCY = "signature", "outputs", "latency"
PROBLEMS_SHOWN = 5  # a reason lists this many problems, then a count


@dataclass(frozen=True)
class OutputRule:
    """How one output is compared: `max_abs_diff` (numbers; strings must be equal), or
    `top_k`: the share of rows whose k highest classes are the same set, at least
    `min_agreement`."""

    max_abs_diff: float = 1e-6
    top_k: int = 0  # 0: compare by max_abs_diff
    min_agreement: float = 1.0


@dataclass(frozen=True)
class GateConfig:
    """The gates of one model's label (from the promotion gates file)."""

    model: str
    label: str
    signature: bool = True
    request_files: tuple[str, ...] = ()  # request-log or warm-up TFRecord files; none: no shadow
    max_requests: int = 100
    default_rule: OutputRule = OutputRule()
    outputs: Mapping[str, OutputRule] = field(default_factory=dict)
    p99_ratio: float = 0.0  # 0: latency not gated
    time_bound_s: float = 60.0
    # The share of one thread's time the model calls may take: after each request the
    # gate rests (calls' time) * (1/share - 1), so serving keeps most of the CPU.
    max_cpu_share: float = 0.5

    def rule(self, output: str) -> OutputRule:
        return self.outputs.get(output, self.default_rule)


@dataclass(frozen=True)
class RecordedRequest:
    """One recorded request, decoded: the signature it named and its input tensors."""

    signature: str
    inputs: Mapping[str, np.ndarray]


# ------------------------------------------------------------------ signature
def shape_compatible(old: TensorSpec, new: TensorSpec) -> bool:
    if old.shape is None or new.shape is None:
        return True
    if len(old.shape) != len(new.shape):
        return False
    return all(a is None or b is None or a == b for a, b in zip(old.shape, new.shape, strict=True))


def _tensor_problems(
    where: str, old: Mapping[str, TensorSpec], new: Mapping[str, TensorSpec]
) -> Iterator[str]:
    for alias, spec in sorted(old.items()):
        other = new.get(alias)
        if other is None:
            yield f"{where} {alias!r} is missing"
        elif np.dtype(other.dtype) != np.dtype(spec.dtype):
            now, was = np.dtype(other.dtype).name, np.dtype(spec.dtype).name
            yield f"{where} {alias!r} is {now}, was {was}"
        elif not shape_compatible(spec, other):
            yield f"{where} {alias!r} has shape {other.shape_text()}, was {spec.shape_text()}"


def signature_problems(old: Mapping[str, Signature], new: Mapping[str, Signature]) -> list[str]:
    """What the new version's signatures lack or change, against the old version's."""
    problems: list[str] = []
    for name, signature in sorted(old.items()):
        other = new.get(name)
        if other is None:
            problems.append(f"signature {name!r} is missing")
            continue
        problems += _tensor_problems(f"{name!r} input", signature.inputs, other.inputs)
        problems += _tensor_problems(f"{name!r} output", signature.outputs, other.outputs)
    return problems


def signature_gate(old: Mapping[str, Signature], new: Mapping[str, Signature]) -> GateResult:
    problems = signature_problems(old, new)
    figures = {"signatures": float(len(old)), "problems": float(len(problems))}
    return GateResult(SIGNATURE, not problems, figures, _listing(problems))


def _listing(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:PROBLEMS_SHOWN])
    more = len(problems) - PROBLEMS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")


# ------------------------------------------------------------------ outputs
def max_abs_diff(old: np.ndarray, new: np.ndarray) -> float:
    """The largest absolute difference (inf when shapes differ; 0/inf for non-numbers)."""
    if old.shape != new.shape:
        return float("inf")
    if old.dtype.kind in "biufc" and new.dtype.kind in "biufc":
        if old.size == 0:
            return 0.0
        return float(np.max(np.abs(old.astype(np.float64) - new.astype(np.float64))))
    return 0.0 if np.array_equal(old, new) else float("inf")


def top_k_agreement(old: np.ndarray, new: np.ndarray, k: int) -> float:
    """The share of rows (all but the last axis) whose k highest classes are the same set."""
    if old.shape != new.shape or old.ndim == 0:
        return 0.0
    k = min(k, old.shape[-1])
    rows_old = np.sort(np.argsort(-old.reshape(-1, old.shape[-1]), axis=1)[:, :k], axis=1)
    rows_new = np.sort(np.argsort(-new.reshape(-1, new.shape[-1]), axis=1)[:, :k], axis=1)
    if rows_old.shape[0] == 0:
        return 1.0
    return float(np.mean(np.all(rows_old == rows_new, axis=1)))


@dataclass
class _OutputTally:
    worst_diff: float = 0.0
    agreeing_rows: float = 0.0
    rows: int = 0

    def add(self, old: np.ndarray, new: np.ndarray, rule: OutputRule) -> None:
        if rule.top_k:
            rows = max(1, old.size // max(1, old.shape[-1] if old.ndim else 1))
            self.agreeing_rows += top_k_agreement(old, new, rule.top_k) * rows
            self.rows += rows
        else:
            self.worst_diff = max(self.worst_diff, max_abs_diff(old, new))

    def figure(self, rule: OutputRule) -> tuple[str, float, bool]:
        if rule.top_k:
            agreement = self.agreeing_rows / self.rows if self.rows else 1.0
            return f"top_{rule.top_k}_agreement", agreement, agreement >= rule.min_agreement
        return "max_abs_diff", self.worst_diff, self.worst_diff <= rule.max_abs_diff


def p99(latencies: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(latencies), 99)) if latencies else 0.0


def _timed(
    servable: Servable,
    request: RecordedRequest,
    outputs: Sequence[str],
    clock: Callable[[], float],
) -> tuple[dict[str, np.ndarray], float]:
    started = clock()
    answer = servable.run(request.signature, request.inputs, outputs)
    return answer, clock() - started


def shadow_gates(
    config: GateConfig,
    old: Servable,
    new: Servable,
    requests: Sequence[RecordedRequest],
    clock: Callable[[], float] = time.perf_counter,
    deadline: float | None = None,
    rest: Callable[[float], object] = time.sleep,
) -> list[GateResult]:
    """Run `requests` on both versions (alternating which goes first) and judge the
    outputs and, when `config.p99_ratio` is set, the latency. Past `deadline` (on
    `clock`) the outputs gate fails: a gate that could not finish proved nothing. `rest`
    waits between requests (for `max_cpu_share`); a true answer stops the gate."""
    tallies: dict[str, _OutputTally] = {}
    old_times: list[float] = []
    new_times: list[float] = []
    skipped = 0
    warmed: set[str] = set()
    failures: list[str] = []
    for index, request in enumerate(requests):
        if deadline is not None and clock() > deadline:
            failures.append(
                f"the time bound ({config.time_bound_s:g}s) passed after {index} of "
                f"{len(requests)} requests"
            )
            break
        signature = old.signatures.get(request.signature)
        if signature is None:
            skipped += 1
            continue
        outputs = sorted(signature.outputs)
        try:
            if request.signature not in warmed:  # a first call builds the version's callable:
                warmed.add(request.signature)  # not what serving it costs, so not timed
                old.run(request.signature, request.inputs, outputs)
                new.run(request.signature, request.inputs, outputs)
            if index % 2:
                new_answer, new_s = _timed(new, request, outputs, clock)
                old_answer, old_s = _timed(old, request, outputs, clock)
            else:
                old_answer, old_s = _timed(old, request, outputs, clock)
                new_answer, new_s = _timed(new, request, outputs, clock)
        except Exception as exc:  # the new version cannot answer what the old one did
            failures.append(f"request {index + 1} failed: {type(exc).__name__}: {exc}")
            break
        old_times.append(old_s)
        new_times.append(new_s)
        if config.max_cpu_share < 1 and rest((old_s + new_s) * (1 / config.max_cpu_share - 1)):
            failures.append(f"stopped after {index + 1} of {len(requests)} requests")
            break  # `rest` answered True: the server is stopping (threading.Event.wait)
        for output in outputs:
            tally = tallies.setdefault(output, _OutputTally())
            tally.add(
                np.asarray(old_answer[output]), np.asarray(new_answer[output]), config.rule(output)
            )
    compared = len(old_times)
    figures: dict[str, float] = {"requests": float(compared), "skipped": float(skipped)}
    if not compared and not failures:
        failures.append(
            f"no recorded request could be compared ({len(requests)} read, {skipped} name "
            "a signature the old version lacks)"
        )
    for output, tally in sorted(tallies.items()):
        rule = config.rule(output)
        name, value, ok = tally.figure(rule)
        figures[f"{output}.{name}"] = value
        if not ok:
            bound = f">= {rule.min_agreement:g}" if rule.top_k else f"<= {rule.max_abs_diff:g}"
            failures.append(f"output {output!r}: {name} {value:g}, wanted {bound}")
    results = [GateResult(OUTPUTS, not failures, figures, _listing(failures))]
    if config.p99_ratio > 0:
        results.append(latency_gate(old_times, new_times, config.p99_ratio))
    return results


def latency_gate(
    old_times: Sequence[float], new_times: Sequence[float], bound: float
) -> GateResult:
    old_p99, new_p99 = p99(old_times), p99(new_times)
    ratio = new_p99 / old_p99 if old_p99 > 0 else (1.0 if new_p99 == 0 else float("inf"))
    figures = {
        "old_p99_ms": old_p99 * 1e3,
        "new_p99_ms": new_p99 * 1e3,
        "ratio": ratio,
        "bound": bound,
    }
    passed = bool(old_times) and ratio <= bound
    reason = ""
    if not old_times:
        reason = "no request ran, so no latency to compare"
    elif not passed:
        new_ms, old_ms = new_p99 * 1e3, old_p99 * 1e3
        reason = f"p99 {new_ms:.3g} ms is {ratio:.3g}x the old {old_ms:.3g} ms (bound {bound:g}x)"
    return GateResult(LATENCY, passed, figures, reason)


def run_gates(
    config: GateConfig,
    old: Servable,
    new: Servable,
    requests: Callable[[], Sequence[RecordedRequest]],
    clock: Callable[[], float] = time.perf_counter,
    rest: Callable[[float], object] = time.sleep,
) -> list[GateResult]:
    """Every configured gate, in order; the shadow gates only when the signatures pass
    (an output the new version lacks cannot be compared). `requests` is called only then."""
    deadline = clock() + config.time_bound_s
    results: list[GateResult] = []
    if config.signature:
        results.append(signature_gate(old.signatures, new.signatures))
        if not results[-1].passed:
            return results
    if config.request_files:
        results += shadow_gates(config, old, new, requests(), clock, deadline, rest)
    return results


def verdict(results: Sequence[GateResult]) -> tuple[bool, str]:
    """Pass only if every gate passed (and at least one ran); the reason names the failures."""
    failed = [f"{r.gate}: {r.reason}" for r in results if not r.passed]
    if not results:
        return False, "no gate is configured to run"
    if failed:
        return False, "; ".join(failed)
    return True, "every gate passed (" + ", ".join(r.gate for r in results) + ")"
