"""Suite 3, memory across version swaps: an unloaded version's memory comes back.

TF Serving's most reported problem is memory not freed on unload (tensorflow/serving#1215,
#1664, #2142). The model here holds a 256 MiB variable, so one version kept after its
unload breaks both bounds below. Each cycle links a new version into the watched folder
and waits until it serves and the old one has ENDed (availability policy: the new version
loads first, so two are resident during a swap), then reads VmRSS from /proc.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.conftest import BigModel
from tests.reliability.conftest import Size, report
from tests.reliability.swapping import swap
from tests.util.processes import ServerProcess, process_figures

# Bound after each swap: the level with one version serving, plus this share of the model.
PER_SWAP_SHARE = 0.15
# Bound on growth over all cycles from the level after the first one. Measured here (2
# cores, TF 2.x, CPU): after the first swap later ones cost ~0-1 MiB each.
BOUND_BASE_MIB = 40.0
BOUND_PER_CYCLE_MIB = 1.5


def predict_one(server: ServerProcess) -> int:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "big"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    reply = server.predict_stub.Predict(request, timeout=30)
    assert list(reply.outputs["y"].float_val) == [1.0]
    return reply.model_spec.version.value


def test_rss_returns_after_every_swap(big_model: BigModel, tmp_path: Path, size: Size) -> None:
    cycles = size.pick(10, 50)
    base = tmp_path / "big"
    big_model.copy_version(1, base)
    server = ServerProcess(
        ["--model_name=big", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0.1"],
        tmp_path / "server.log",
    )
    rss_mib: list[float] = []
    try:
        server.wait_serving(timeout=120)
        assert predict_one(server) == 1
        one_serving = process_figures(server.process.pid).rss_mib
        bound = one_serving + PER_SWAP_SHARE * big_model.mib
        for cycle in range(cycles):
            # ignored below: a ServerProcess stands in for the handle
            swap(server, big_model, base, "big", old=cycle + 1, new=cycle + 2)  # type: ignore[arg-type]
            assert predict_one(server) == cycle + 2
            rss_mib.append(process_figures(server.process.pid).rss_mib)
            assert rss_mib[-1] <= bound, (
                f"after swap {cycle + 1} (v{cycle + 1} ended) RSS is {rss_mib[-1]:.0f} MiB, "
                f"over {bound:.0f} (one version serving: {one_serving:.0f} MiB): {rss_mib}"
            )
    finally:
        assert server.stop() == 0
    first, last = rss_mib[0], rss_mib[-1]
    growth_bound = BOUND_BASE_MIB + BOUND_PER_CYCLE_MIB * (cycles - 1)
    report(
        "memory_cycles",
        cycles=cycles,
        model_mib=big_model.mib,
        rss_one_version_serving_mib=round(one_serving, 1),
        rss_after_first_cycle_mib=round(first, 1),
        rss_after_last_cycle_mib=round(last, 1),
        growth_mib=round(last - first, 1),
        growth_per_cycle_mib=round(float(np.polyfit(range(cycles), rss_mib, 1)[0]), 2),
        peak_after_swap_mib=round(max(rss_mib), 1),
        bound_after_swap_mib=round(bound, 1),
        growth_bound_mib=growth_bound,
    )
    assert last - first <= growth_bound, f"RSS grew {last - first:.1f} MiB: {rss_mib}"
