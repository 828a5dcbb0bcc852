"""One request path for every protocol: resolve the version → check the request against its
signature → run it (directly or batched) → the outputs and the version that answered.

Protocols are codecs around this: gRPC and REST decode their request into a plan
(Predict, Classify, Regress, MultiInference are all plans), `RequestCore.execute` runs
it, and they encode what it returns. Warm-up runs its records through the same
`run_plan`, on the load thread and before the version serves (`run_now`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

import numpy as np

from pyserving.engine.runner import ModelCall, Runner
from pyserving.engine.servable import Servable
from pyserving.engine.servable_map import ServableHandle, ServableMap
from pyserving.engine.signature_checks import check_inputs, check_output_filter, select_signature

Outputs = Mapping[str, np.ndarray]
R = TypeVar("R")

# Without configured limits, a request tensor may claim at most this many elements, and a
# request's tensors at most this many bytes (the server sets both from its flags).
DEFAULT_MAX_ELEMENTS = 1 << 28
DEFAULT_MAX_TENSOR_BYTES = 1 << 29


# The per-request values here are NamedTuples, not frozen dataclasses: as immutable, and
# made by one C call instead of an object.__setattr__ per field.
class ModelRequest(NamedTuple):
    """Which servable a request names: a version, a label, or (neither) the latest."""

    name: str
    version: int | None
    label: str | None


@dataclass(frozen=True)
class PlanOptions:
    """Server-wide settings that change how requests are checked."""

    method_name_check: bool = False  # --enable_signature_method_name_check
    max_elements: int = DEFAULT_MAX_ELEMENTS  # most elements one request tensor may claim
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES  # most bytes a request's tensors may take


class RequestPlan(NamedTuple, Generic[R]):
    """The calls to make, and how to build the answer from their outputs and the version
    that answered (its handle: the number and the fingerprint)."""

    calls: tuple[ModelCall, ...]
    finish: Callable[[Sequence[Outputs], ServableHandle], R]


class Prediction(NamedTuple):
    """Predict's answer, before any protocol encodes it."""

    outputs: Outputs
    version: int
    signature: str
    fingerprint: str = ""  # the answering version's model bytes (adapters/loaders/provenance)


M = TypeVar("M")


class Served(NamedTuple, Generic[M]):
    """A reply built by the plans of Classify, Regress and MultiInference (TF Serving's
    messages, with no field for it) and the fingerprint of the version that made it."""

    message: M
    fingerprint: str


def with_fingerprint(plan: RequestPlan[M]) -> RequestPlan[Served[M]]:
    """The same plan, its answer paired with the answering version's fingerprint."""
    finish = plan.finish

    def served(results: Sequence[Outputs], handle: ServableHandle) -> Served[M]:
        return Served(finish(results, handle), handle.fingerprint)

    return RequestPlan(plan.calls, served)


def plan_predict(
    servable: Servable,
    signature_name: str,
    inputs: Mapping[str, np.ndarray],
    output_filter: Sequence[str],
) -> RequestPlan[Prediction]:
    """TF Serving's Predict: the signature (default `serving_default`), its input keys, the
    output filter's names; dtypes and shapes are the model's to refuse."""
    signature = select_signature(servable, signature_name)
    check_inputs(signature, inputs)
    wanted = tuple(output_filter)
    check_output_filter(signature, wanted)
    name = signature.name

    def finish(results: Sequence[Outputs], served: ServableHandle) -> Prediction:
        return Prediction(results[0], served.version, name, served.fingerprint)

    return RequestPlan((ModelCall(name, inputs, wanted),), finish)


# The plan for the servable a request resolved to; may be a coroutine (REST decodes a big
# body off the event loop once it knows the signature).
Planner = Callable[[Servable], "RequestPlan[R] | Awaitable[RequestPlan[R]]"]
# Told the seconds each successful model call of a one-call plan took, queue wait included
# (TF Serving's runtime_latency: predict_util.cc times Session::Run, batching inside it).
RuntimeObserver = Callable[[ServableHandle, float], None]


async def run_plan(
    runner: Runner,
    handle: ServableHandle,
    plan: RequestPlan[R],
    deadline: float | None,
    on_runtime: RuntimeObserver | None = None,
) -> R:
    """The one executor of a plan: its calls in order through `runner`, then its answer."""
    calls = plan.calls
    if len(calls) == 1:  # Predict, Classify, Regress
        started = time.perf_counter()
        outputs = await runner.run(handle, calls[0], deadline)
        if on_runtime is not None:
            on_runtime(handle, time.perf_counter() - started)
        return plan.finish((outputs,), handle)
    results = [await runner.run(handle, call, deadline) for call in calls]
    return plan.finish(results, handle)


class RequestCore:
    """Serves plans against the versions in the serving map, through one runner."""

    def __init__(
        self,
        servable_map: ServableMap,
        runner: Runner,
        on_runtime: RuntimeObserver | None = None,
    ) -> None:
        self.servable_map = servable_map
        self.runner = runner
        self.on_runtime = on_runtime

    async def execute(
        self, spec: ModelRequest, planner: Planner[R], deadline: float | None = None
    ) -> R:
        """Hold the version `spec` names while its plan is made and run.

        `deadline` (absolute, `time.monotonic()`): a request still queued then is dropped
        from its batch, or not started, with DEADLINE_EXCEEDED."""
        with self.servable_map.acquire(spec.name, spec.version, spec.label) as handle:
            plan = planner(handle.servable)
            if not isinstance(plan, RequestPlan):
                plan = await plan
            return await run_plan(self.runner, handle, plan, deadline, self.on_runtime)


class InlineRunner:
    """Runs the model on the calling thread: for warm-up, which is on a load thread."""

    async def run(
        self, handle: ServableHandle, call: ModelCall, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        return handle.servable.run(call.signature, call.inputs, call.output_filter)

    def close(self) -> None:
        pass


_INLINE = InlineRunner()


def run_now(servable: Servable, plan: RequestPlan[R], version: int, model: str = "") -> R:
    """Run a plan to completion on this thread (warm-up: the version is not served yet).

    `run_plan` with `InlineRunner` never suspends, so one step of the coroutine finishes it.
    """
    coroutine = run_plan(_INLINE, ServableHandle(model, version, servable), plan, None)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        result: R = finished.value
        return result
    coroutine.close()
    raise RuntimeError("a warm-up plan suspended; it must run inline")
