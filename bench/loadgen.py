"""The load generator: written once, used unchanged for every target.

grpc.aio on one event loop, sending pre-serialised Predict requests and not decoding
the replies (only the first reply of a run is decoded and checked), so the client spends
as little of the shared CPUs as a Python client can. Closed loop: `concurrency` workers
each send their next request when the last one answered. Open loop: requests start at a
fixed rate whatever the replies do, at most `concurrency` in flight (a request that would
exceed it counts as dropped). Either way a run ends at `max_requests` measured replies
or after `duration_s`, whichever comes first; the first `warmup_s` are not measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def predict_requests(
    images: np.ndarray, model: str = "mnist", signature: str = "predict_images"
) -> list[bytes]:
    """One serialised one-image request per row, as the tutorial's client sends them."""
    out = []
    for row in np.ascontiguousarray(images, dtype=np.float32):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        tensor: tensor_pb2.TensorProto = request.inputs["images"]
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.tensor_shape.dim.add(size=1)
        tensor.tensor_shape.dim.add(size=row.size)
        tensor.tensor_content = row.tobytes()
        out.append(request.SerializeToString())
    return out


@dataclass(frozen=True)
class LoadSpec:
    concurrency: int
    duration_s: float
    warmup_s: float
    max_requests: int
    mode: str = "closed"  # or "open"
    rate: float = 0.0  # requests/s, open loop only
    timeout_s: float = 10.0


@dataclass
class LoadResult:
    concurrency: int
    requests: int  # measured replies (OK or not)
    errors: dict[str, int]
    window_s: float
    window_wall: tuple[float, float]  # time.time() bounds of the measured window
    sent: int  # every request answered, warm-up included (for CPU per request)
    latencies_s: np.ndarray = field(repr=False)
    dropped: int = 0

    @property
    def throughput(self) -> float:
        ok = self.requests - sum(self.errors.values())
        return ok / self.window_s if self.window_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not len(self.latencies_s):
            return float("nan")
        return float(np.percentile(self.latencies_s, q) * 1e3)


class _Recorder:
    def __init__(self, spec: LoadSpec, start: float) -> None:
        self.spec = spec
        self.measure_from = start + spec.warmup_s
        self.stop_at = self.measure_from + spec.duration_s
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.first_measured: float | None = None
        self.last_measured = self.measure_from
        self.done = asyncio.Event()
        self.sent = 0

    def record(self, sent: float, now: float, error: str | None) -> None:
        self.sent += 1
        if sent < self.measure_from:
            return
        if self.first_measured is None:
            self.first_measured = sent
        self.last_measured = now
        if error is None:
            self.latencies.append(now - sent)
        else:
            self.errors[error] = self.errors.get(error, 0) + 1
        if len(self.latencies) + sum(self.errors.values()) >= self.spec.max_requests:
            self.done.set()

    def running(self, now: float) -> bool:
        return now < self.stop_at and not self.done.is_set()


async def run_load(target: str, requests: Sequence[bytes], spec: LoadSpec) -> LoadResult:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(PREDICT)  # bytes in, bytes out: no client-side (de)coding
        first = predict_pb2.PredictResponse.FromString(await call(requests[0], timeout=30))
        if "scores" not in first.outputs:
            raise RuntimeError(f"{target} answered Predict without 'scores': {first}")
        wall0, start = time.time(), time.perf_counter()
        recorder = _Recorder(spec, start)
        if spec.mode == "open":
            dropped = await _open_loop(call, requests, spec, recorder)
        else:
            dropped = 0
            await asyncio.gather(
                *(
                    _closed_worker(call, requests, i, spec, recorder)
                    for i in range(spec.concurrency)
                )
            )
    begin = recorder.measure_from
    end = (
        min(recorder.last_measured, recorder.stop_at)
        if recorder.done.is_set()
        else recorder.stop_at
    )
    window = max(end - begin, 1e-9)
    return LoadResult(
        concurrency=spec.concurrency,
        requests=len(recorder.latencies) + sum(recorder.errors.values()),
        errors=recorder.errors,
        window_s=window,
        window_wall=(wall0 + (begin - start), wall0 + (end - start)),
        sent=recorder.sent,
        latencies_s=np.array(recorder.latencies),
        dropped=dropped,
    )


async def _one(
    call: grpc.aio.UnaryUnaryMultiCallable, request: bytes, spec: LoadSpec, recorder: _Recorder
) -> None:
    sent = time.perf_counter()
    try:
        await call(request, timeout=spec.timeout_s)
        error = None
    except grpc.aio.AioRpcError as exc:
        error = exc.code().name
    recorder.record(sent, time.perf_counter(), error)


async def _closed_worker(
    call: grpc.aio.UnaryUnaryMultiCallable,
    requests: Sequence[bytes],
    offset: int,
    spec: LoadSpec,
    recorder: _Recorder,
) -> None:
    i = offset
    n = len(requests)
    while recorder.running(time.perf_counter()):
        await _one(call, requests[i % n], spec, recorder)
        i += spec.concurrency


async def _open_loop(
    call: grpc.aio.UnaryUnaryMultiCallable,
    requests: Sequence[bytes],
    spec: LoadSpec,
    recorder: _Recorder,
) -> int:
    if spec.rate <= 0:
        raise ValueError("open loop needs a rate > 0 (requests per second)")
    interval = 1.0 / spec.rate
    in_flight: set[asyncio.Task[None]] = set()
    dropped = 0
    start = time.perf_counter()
    i = 0
    while recorder.running(time.perf_counter()):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= spec.concurrency:
            if due >= recorder.measure_from:
                dropped += 1
        else:
            task = asyncio.create_task(_one(call, requests[i % len(requests)], spec, recorder))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        i += 1
    if in_flight:
        await asyncio.gather(*in_flight)
    return dropped
