"""Metrics, dashboards and logs against a real server and a real Prometheus.

One server per module runs the tutorial's scenario (serve v1, requests including errors,
swap to v2, a broken v3 that fails to load) while Prometheus scrapes it with the shipped
`dashboards/prometheus.yml`. Then every expression of every shipped dashboard panel is
asked of Prometheus's HTTP API and must return at least one finite value.

Batching panels need a server that batches: the scenario's server runs with
`--enable_batching` and a small queue, so every batching panel (listed by name in
`BATCHING_PANELS`) has data too.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from pyserving.adapters.metrics import ServingMetrics, new_registry
from pyserving.api.envelope.http_server import HttpServer, local_exposition, metrics_routes
from pyserving.engine.events import BatchRun
from tests.e2e.conftest import FAST_FLAGS, TrainedModels, predict_request
from tests.e2e.prometheus import (
    PROMETHEUS_HINT,
    SHIPPED_CONFIG,
    PanelQuery,
    Prometheus,
    finite_values,
    load_dashboards,
    panel_queries,
    substitute,
)
from tests.util.processes import ServerProcess, free_port, refused_start
from tests.util.requirements import require_binary

pytestmark = pytest.mark.e2e

END = get_model_status_pb2.ModelVersionStatus.END
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE

# Panels whose metrics only a batching server produces (explicit, by dashboard and title).
BATCHING_PANELS = {
    ("batching", "Batch size distribution"),
    ("batching", "Batch size percentiles"),
    ("batching", "Batches per second"),
    ("batching", "Queue wait (oldest request)"),
    ("batching", "Padding fraction"),
    ("batching", "Queue depth"),
    ("batching", "Rejected requests"),
}


@dataclass
class Scenario:
    server: ServerProcess
    prometheus: Prometheus
    rest_port: int
    started: float
    unknown_model: str


def _requests(
    server: ServerProcess,
    prometheus: Prometheus,
    images: np.ndarray,
    unknown_model: str,
    phase: int,
) -> None:
    """OK Predicts, metadata and status, and errors: an unknown model and a bad input.

    Waits until Prometheus has scraped the phase, so every request series has a sample
    per phase and the panels' rate() windows hold at least two of them.
    """
    for _ in range(10):
        server.predict_stub.Predict(predict_request(images[:4]), timeout=30)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "mnist"
    metadata.metadata_field.append("signature_def")
    server.predict_stub.GetModelMetadata(metadata, timeout=30)
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "mnist"
    server.model_stub.GetModelStatus(status, timeout=30)
    for request, code in (
        (predict_request(images[:1], model=unknown_model), grpc.StatusCode.NOT_FOUND),
        (predict_request(images[:1, :5]), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as info:
            server.predict_stub.Predict(request, timeout=30)
        assert info.value.code() == code
    prometheus.wait_for(
        f'sum(pyserving_requests_total{{code="NOT_FOUND"}}) >= {phase} and '
        f'sum(pyserving_requests_total{{code="INVALID_ARGUMENT"}}) >= {phase} and '
        f'sum(pyserving_requests_total{{api="Predict",code="OK"}}) >= {10 * phase}'
    )


def _burst(server: ServerProcess, images: np.ndarray, n: int = 48) -> int:
    """n concurrent Predicts against a one-batch queue; how many were refused UNAVAILABLE."""
    futures = [
        server.predict_stub.Predict.future(predict_request(images[:1]), timeout=30)
        for _ in range(n)
    ]
    refused = 0
    for future in futures:
        try:
            future.result()
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            refused += 1
    return refused


@pytest.fixture(scope="module")
def scenario(
    trained_models: TrainedModels,
    tmp_path_factory: pytest.TempPathFactory,
    module_workers: int,
) -> Iterator[Scenario]:
    require_binary("prometheus", PROMETHEUS_HINT)
    work = tmp_path_factory.mktemp("observability")
    watched = work / "models"
    trained_models.copy_version(1, watched)
    monitoring = work / "monitoring.config"
    monitoring.write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }'
    )
    rest_port = free_port()
    prometheus = Prometheus(work / "prometheus", target=f"127.0.0.1:{rest_port}")
    started = time.time()
    args = [
        "--model_name=mnist",
        f"--model_base_path={watched}",
        f"--rest_api_port={rest_port}",
        f"--monitoring_config_file={monitoring}",
        *FAST_FLAGS,
    ]
    # A small queue, so the burst below overflows it and rejections have data.
    batching = work / "batching.config"
    batching.write_text(
        "max_batch_size { value: 8 } batch_timeout_micros { value: 50000 } "
        "max_enqueued_batches { value: 1 } num_batch_threads { value: 1 } "
        "allowed_batch_sizes: 8"
    )
    args += ["--enable_batching", f"--batching_parameters_file={batching}"]
    server = ServerProcess(args, work / "server.log", workers=module_workers)
    unknown_model = "no-such-model-7f3a"
    try:
        server.wait_serving()
        images = trained_models.dataset.test_images
        assert _burst(server, images) > 0, "the burst should overflow the batch queue"
        _requests(server, prometheus, images, unknown_model, phase=1)

        trained_models.copy_version(2, watched)  # the swap: v2 in, v1 out
        server.wait_for(lambda: server.version_states("mnist").get(1) == END, what="v1 END")
        _requests(server, prometheus, images, unknown_model, phase=2)

        broken = watched / ".staging-3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        broken.rename(watched / "3")
        server.wait_for(lambda: server.version_states("mnist").get(3) == END, what="v3 failed")
        assert server.version_states("mnist")[2] == AVAILABLE
        _requests(server, prometheus, images, unknown_model, phase=3)

        # The last scrape must postdate everything above.
        prometheus.wait_for(
            'pyserving_servable_transitions_total{model="mnist",version="3",to_state="error"} > 0'
        )
        yield Scenario(server, prometheus, rest_port, started, unknown_model)
    finally:
        server.stop()
        prometheus.stop()


def moves(scenario: Scenario, version: int) -> set[tuple[str, str]]:
    result = scenario.prometheus.query(
        f'pyserving_servable_transitions_total{{model="mnist",version="{version}"}} > 0'
    )
    for r in result:
        assert float(r["value"][1]) == 1.0, r
    return {(r["metric"]["from_state"], r["metric"]["to_state"]) for r in result}


def test_prometheus_holds_each_versions_transitions(scenario: Scenario) -> None:
    assert moves(scenario, 1) == {
        ("new", "loading"),
        ("loading", "available"),
        ("available", "unloading"),
        ("unloading", "end"),
    }
    assert moves(scenario, 2) == {("new", "loading"), ("loading", "available")}
    assert moves(scenario, 3) == {("new", "loading"), ("loading", "error")}


def test_failed_load_and_versions_by_state(scenario: Scenario) -> None:
    (failures,) = scenario.prometheus.query('pyserving_model_load_failures_total{model="mnist"}')
    assert float(failures["value"][1]) == 1.0
    states = {
        r["metric"]["state"]: float(r["value"][1])
        for r in scenario.prometheus.query('pyserving_servable_versions{model="mnist"}')
    }
    assert states == {
        "new": 0.0,
        "loading": 0.0,
        "available": 1.0,
        "unloading": 0.0,
        "end": 1.0,
        "error": 1.0,
    }


def test_requests_by_code_with_unknown_models_under_one_label(scenario: Scenario) -> None:
    codes = {
        (r["metric"]["model"], r["metric"]["api"], r["metric"]["code"]): float(r["value"][1])
        for r in scenario.prometheus.query("pyserving_requests_total")
    }
    assert codes[("mnist", "Predict", "OK")] >= 30
    assert codes[("mnist", "Predict", "INVALID_ARGUMENT")] == 3
    assert codes[("_unknown_", "Predict", "NOT_FOUND")] == 3
    assert codes[("mnist", "GetModelMetadata", "OK")] == 3
    assert codes[("mnist", "GetModelStatus", "OK")] >= 3
    with urllib.request.urlopen(
        f"http://127.0.0.1:{scenario.rest_port}/monitoring/prometheus/metrics", timeout=10
    ) as reply:
        text = reply.read().decode()
    assert scenario.unknown_model not in text
    assert "process_cpu_seconds_total" in text


def test_probes(scenario: Scenario) -> None:
    for path, body in (("/healthz", "ok"), ("/readyz", "ready")):
        with urllib.request.urlopen(f"http://127.0.0.1:{scenario.rest_port}{path}") as reply:
            assert reply.status == 200 and reply.read().decode().strip() == body


def test_dashboard_variables_have_values(scenario: Scenario) -> None:
    for name, dashboard in load_dashboards().items():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            definition = variable["definition"]  # label_values(metric, label)
            metric, label = definition.removeprefix("label_values(").rstrip(")").split(", ")
            values = scenario.prometheus.api(f"label/{label}/values", **{"match[]": metric})
            assert values, f"{name}: variable {variable['name']} ({definition}) has no values"


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.id)
def test_every_panel_query_returns_data(scenario: Scenario, query: PanelQuery) -> None:
    window = f"{int(time.time() - scenario.started) + 30}s"  # the whole scenario
    expr = substitute(query.expr, window)
    result = scenario.prometheus.query(expr)
    if not finite_values(result):
        health = [
            (t["health"], t["lastError"], t["lastScrape"])
            for t in scenario.prometheus.api("targets")["activeTargets"]
        ]
        scrapes = scenario.prometheus.query(
            f"count_over_time(up[{window}]) or sum_over_time(up[{window}])"
        )
        pytest.fail(
            f"{query.dashboard} / {query.panel}: {expr} -> {result}\n"
            f"window {window}, targets {health}, scrapes {scrapes}"
        )


def test_batching_panels_are_exactly_the_batching_dashboard() -> None:
    """The exemption list names every batching panel and nothing else."""
    (batching,) = [d for name, d in load_dashboards().items() if name == "batching"]
    assert {("batching", p["title"]) for p in batching["panels"]} == BATCHING_PANELS


def test_idle_polls_log_nothing_at_info(scenario: Scenario) -> None:
    """Polling every 0.2 s with nothing new must not write a log line per poll."""
    before = scenario.server.log_text().count("\n")
    time.sleep(3)  # 15 polls
    new_lines = scenario.server.log_text().splitlines()[before:]
    assert [line for line in new_lines if line.strip()] == []


def test_request_logs_carry_a_request_id(scenario: Scenario) -> None:
    lines = scenario.server.log_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]  # not TF's own
    first = [r for r in records if r.get("message") == "first_request"]
    assert first and all(len(r["request_id"]) == 16 and r["model"] == "mnist" for r in first)
    transitions = [r for r in records if r.get("message") == "version_transition"]
    assert transitions and all({"model", "version", "state"} <= r.keys() for r in transitions)


def test_promtool_accepts_the_shipped_config() -> None:
    promtool = require_binary("promtool", PROMETHEUS_HINT)
    result = subprocess.run(
        [promtool, "check", "config", str(SHIPPED_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    import yaml

    from tests.e2e.prometheus import DASHBOARDS

    provisioning = DASHBOARDS / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "pyserving.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "pyserving.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file" and provider["options"]["path"]
    for name, dashboard in load_dashboards().items():
        (ds_var,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        assert ds_var["current"]["value"] == source["uid"], name
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])


def test_batching_panel_queries_against_batch_run_events(tmp_path: Path) -> None:
    """Until the batcher is merged: the batching panels' PromQL, checked on a real Prometheus
    scraping a real metrics endpoint fed with BatchRun events and the batcher's hooks."""
    require_binary("prometheus", PROMETHEUS_HINT)
    registry = new_registry()
    metrics = ServingMetrics(registry, known_models=lambda: {"mnist"})
    metrics.watch_queue_depths(lambda: {("mnist", 2, "predict_images"): 3})
    http = HttpServer(0, host="127.0.0.1")
    http.add_routes(metrics_routes(local_exposition(registry), "/monitoring/prometheus/metrics"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(http.start(), loop).result(30)
    prometheus = Prometheus(tmp_path / "prometheus", target=f"127.0.0.1:{port}")
    started = time.time()

    def run_batches(n: int) -> None:
        for i in range(n):
            size = 1 + i % 7
            metrics.handle(
                BatchRun(
                    model="mnist",
                    version=2,
                    signature="predict_images",
                    size=size,
                    padded_size=8,
                    oldest_wait_s=0.001 * size,
                )
            )
        metrics.batch_rejected("mnist", "predict_images", "queue_full")

    try:
        run_batches(20)  # two rounds with a scrape between: rates are non-zero
        prometheus.wait_for("pyserving_batch_size_count >= 20")
        run_batches(20)
        prometheus.wait_for("pyserving_batch_size_count >= 40")
        window = f"{int(time.time() - started) + 30}s"
        batching = [q for q in panel_queries() if (q.dashboard, q.panel) in BATCHING_PANELS]
        assert {(q.dashboard, q.panel) for q in batching} == BATCHING_PANELS
        for query in batching:
            expr = substitute(query.expr, window)
            result = prometheus.query(expr)
            assert finite_values(result), f"{query.panel}: {expr} -> {result}"
    finally:
        prometheus.stop()
        asyncio.run_coroutine_threadsafe(http.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--monitoring_config_file={bad}"], 'no field named "enabled"'),
        (["--port=8600", "--rest_api_port=8600"], "--rest_api_port=8600 is also --port"),
    ],
    ids=["bad-monitoring-config", "same-port"],
)
def test_startup_errors_say_what_to_fix(tmp_path: Path, flags: list[str], message: str) -> None:
    bad = tmp_path / "monitoring.config"
    bad.write_text("prometheus_config { enabled: true }")
    stderr = refused_start(f"--model_base_path={tmp_path}", *(f.format(bad=bad) for f in flags))
    assert message in stderr
    assert "Traceback" not in stderr


def _scrape(scenario: Scenario) -> str:
    url = f"http://127.0.0.1:{scenario.rest_port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def _value(text: str, series: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(series + " ")]
    return float(line.rsplit(" ", 1)[1])


def test_tf_serving_series_as_tf_serving_exports_them(scenario: Scenario) -> None:
    """Names, labels, units and buckets of TF Serving's exporter; latency only on success."""
    text = _scrape(scenario)
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ":tensorflow:serving:request_count_total" not in text  # no _total added
    count = ":tensorflow:serving:request_count"
    ok = _value(text, f'{count}{{model_name="mnist",status="OK"}}')
    assert ok >= 30
    assert _value(text, f'{count}{{model_name="mnist",status="INVALID_ARGUMENT"}}') == 3
    assert _value(text, f'{count}{{model_name="_unknown_",status="NOT_FOUND"}}') == 3
    # GetModelMetadata / GetModelStatus are not counted by TF Serving's gRPC service.
    latency = ':tensorflow:serving:request_latency_count{model_name="mnist",API="Predict",'
    assert _value(text, latency + 'entrypoint="GRPC"}') == ok  # successes only
    runtime = ':tensorflow:serving:runtime_latency_count{model_name="mnist",API="Predict",'
    assert _value(text, runtime + 'runtime="TF1"}') == ok
    buckets = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith(":tensorflow:serving:request_latency_bucket{")
        and 'API="Predict"' in line
    ]
    assert buckets[:4] == ["10", "18", "32.4", "58.32"] and buckets[-1] == "+Inf"
    assert len(buckets) == 34  # Exponential(10, 1.8, 33) and +Inf
    queued = ':tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name="'
    assert _value(text, queued + 'batch_threads"}') >= ok
    attempts = [
        line
        for line in text.splitlines()
        if line.startswith(":tensorflow:cc:saved_model:load_attempt")
    ]
    assert sum('status="success"' in line for line in attempts) == 2  # v1, v2
    assert sum('status="fail"' in line for line in attempts) == 1  # the broken v3
    # One Session run per batch; a batch the graph refused ran too, but is not counted.
    runs = _value(text, ":tensorflow:core:graph_runs{}")
    wrapped = _value(text, ":tensorflow:serving:batching_session:wrapped_run_count{}")
    assert 0 < runs <= wrapped


@pytest.mark.parametrize(
    ("names", "present", "absent"),
    [
        ("tfserving", ":tensorflow:serving:request_count{", "pyserving_requests_total"),
        ("pyserving", "pyserving_requests_total", ":tensorflow:"),
    ],
)
def test_metrics_names_picks_the_families(
    trained_models: TrainedModels, tmp_path: Path, names: str, present: str, absent: str
) -> None:
    trained_models.copy_version(1, tmp_path / "models")
    server = ServerProcess(
        [
            "--model_name=mnist",
            f"--model_base_path={tmp_path / 'models'}",
            f"--metrics_names={names}",
            *FAST_FLAGS,
        ],
        tmp_path / "server.log",
        rest=True,
    )
    try:
        server.wait_serving()
        server.predict_stub.Predict(predict_request(trained_models.dataset.test_images[:1]))
        url = server.url("/monitoring/prometheus/metrics")
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
    finally:
        server.stop()
    assert present in text
    assert absent not in text
