"""TF Serving's series: names, buckets, where values are recorded, and the exposition."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyserving.adapters.tfserving_metrics import (
    LATENCY_BUCKETS,
    QUEUING_BUCKETS,
    TFServingMetrics,
    exponential_buckets,
    prometheus_name,
)
from pyserving.api.cli import build_parser
from pyserving.engine.events import AspiredVersion, AspiredVersions, BatchRun, WarmupFinished
from pyserving.engine.request_core import ModelRequest, RequestCore, RequestPlan
from pyserving.engine.request_scope import CURRENT, RequestScope
from pyserving.engine.runner import ModelCall
from pyserving.engine.servable_map import ServableHandle, ServableMap


def metrics() -> TFServingMetrics:
    return TFServingMetrics(known_models=lambda: {"mnist"}, thread_pool_name="pool")


def samples(m: TFServingMetrics, name: str) -> dict[tuple, float]:
    """The samples of `name`, read by prometheus_client's parser (which names a counter's
    samples NAME_total; the exposition itself has no _total: see the e2e test)."""
    out = {}
    for family in text_string_to_metric_families(m.exposition()):
        for s in family.samples:
            if s.name == name or (family.type == "counter" and s.name == name + "_total"):
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_name_mangling_and_buckets_are_tf_servings() -> None:
    assert (
        prometheus_name("/tensorflow/serving/request_count") == ":tensorflow:serving:request_count"
    )
    assert (
        prometheus_name("/tensorflow/serving/batching_session/queuing_latency")
        == ":tensorflow:serving:batching_session:queuing_latency"
    )
    assert prometheus_name("9lives-x") == "_9lives:x"
    assert len(LATENCY_BUCKETS) == 33 and LATENCY_BUCKETS[:3] == (10.0, 18.0, 32.4)
    assert len(QUEUING_BUCKETS) == 52 and QUEUING_BUCKETS[0] == 100.0
    assert exponential_buckets(1, 2, 14)[-1] == 8192.0


def test_request_count_always_latency_only_on_ok() -> None:
    m = metrics()
    grpc_predict = m.request_series("mnist", "Predict")
    grpc_predict.observe("OK", 0.002)
    grpc_predict.observe("INVALID_ARGUMENT", 0.001)
    m.request_series("mnist", "rest_predict").observe("OK", 0.003)
    m.request_series("mnist", "GetModelMetadata").observe("OK", 0.001)  # not counted by TF
    m.request_series("typo", "Predict").observe("NOT_FOUND", 0.001)
    counts = samples(m, ":tensorflow:serving:request_count")
    assert counts == {
        (("model_name", "mnist"), ("status", "OK")): 2.0,
        (("model_name", "mnist"), ("status", "INVALID_ARGUMENT")): 1.0,
        (("model_name", "_unknown_"), ("status", "NOT_FOUND")): 1.0,
    }
    latency = samples(m, ":tensorflow:serving:request_latency_count")
    assert latency == {
        (("API", "Predict"), ("entrypoint", "GRPC"), ("model_name", "mnist")): 1.0,
        (("API", "predict"), ("entrypoint", "REST"), ("model_name", "mnist")): 1.0,
    }
    sums = samples(m, ":tensorflow:serving:request_latency_sum")
    assert sums[(("API", "Predict"), ("entrypoint", "GRPC"), ("model_name", "mnist"))] == 2000.0
    assert "# TYPE :tensorflow:serving:request_count counter" in m.exposition()


class _Runner:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def run(self, handle, call, deadline=None):
        if self.fail:
            raise ValueError("refused")
        return {"y": np.zeros(1)}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("api", "label"), [("Predict", "Predict"), ("rest_classify", "Classify")])
def test_runtime_latency_around_the_model_call_on_success(api: str, label: str) -> None:
    """Through the request core, as the server wires it (its RuntimeObserver)."""
    m = metrics()
    servable_map = ServableMap()
    servable_map.add(ServableHandle("mnist", 1, object()))
    plan = RequestPlan((ModelCall("s", {"x": np.zeros(1)}, ()),), lambda results, v: results)

    async def call(runner) -> None:
        token = CURRENT.set(RequestScope(api, "mnist", lambda: None))
        try:
            core = RequestCore(servable_map, runner, m.observe_runtime)
            await core.execute(ModelRequest("mnist", None, None), lambda servable: plan)
        finally:
            CURRENT.reset(token)

    asyncio.run(call(_Runner()))
    with pytest.raises(ValueError):
        asyncio.run(call(_Runner(fail=True)))
    counts = samples(m, ":tensorflow:serving:runtime_latency_count")
    assert counts == {(("API", label), ("model_name", "mnist"), ("runtime", "TF1")): 1.0}


def test_batches_warmup_and_loads() -> None:
    m = metrics()
    m.handle(
        BatchRun(
            model="mnist",
            version=1,
            signature="s",
            size=3,
            padded_size=4,
            oldest_wait_s=0.002,
            task_sizes=(1, 2),
            task_waits_s=(0.002, 0.001),
            inputs=1,
        )
    )
    b = ":tensorflow:serving:batching_session:"
    assert samples(m, b + "queuing_latency_count") == {(("thread_pool_name", "pool"),): 2.0}
    assert samples(m, b + "queuing_latency_sum") == {(("thread_pool_name", "pool"),): 3000.0}
    assert samples(m, b + "input_batch_size_count") == {(): 2.0}
    assert samples(m, b + "padding_size_sum") == {(("execution_batch_size", "4"),): 1.0}
    assert samples(m, b + "processed_batch_size_sum") == {(): 4.0}
    assert samples(m, b + "wrapped_run_count") == {(): 1.0}
    m.handle(AspiredVersions(model="mnist", versions=(AspiredVersion(1, "/m/1"),)))
    m.handle(WarmupFinished(model="mnist", version=1, records=5, iterations=1, duration_s=0.5))
    assert samples(m, ":tensorflow:serving:model_warmup_latency_count") == {
        (("model_path", "/m/1"), ("status", "OK")): 1.0
    }
    m.load_attempt("/m/1", True, 1500)
    m.load_attempt("/m/2", False, 10)
    m.load_stage("/m/1", "restore_graph", 700)
    attempts = samples(m, ":tensorflow:cc:saved_model:load_attempt_count")
    assert attempts == {
        (("model_path", "/m/1"), ("status", "success")): 1.0,
        (("model_path", "/m/2"), ("status", "fail")): 1.0,
    }
    assert samples(m, ":tensorflow:cc:saved_model:load_latency") == {
        (("model_path", "/m/1"),): 1500.0,
        (("model_path", "/m/2"),): 10.0,
    }
    m.graph_run(250)
    m.graph_build(900)
    assert samples(m, ":tensorflow:core:graph_run_time_usecs") == {(): 250.0}
    assert samples(m, ":tensorflow:core:graph_build_calls") == {(): 1.0}


def test_metrics_names_flag() -> None:
    # argparse's private fields, typed as Optional and as any action
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr,index]
    assert serve.parse_args([]).metrics_names == "both"
    assert serve.parse_args(["--metrics_names=tfserving"]).metrics_names == "tfserving"
    with pytest.raises(SystemExit):
        serve.parse_args(["--metrics_names=prometheus"])
