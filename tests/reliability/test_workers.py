"""`--workers=2`: front-end processes over one engine, with real processes and signals.

A front-end killed under load comes back while the other keeps serving (only the killed
one's clients see UNAVAILABLE); a killed engine takes its front-ends with it; a scrape of
any front-end counts every process's requests once, and keeps a restarted one's; the
event log records the front-ends' lives and `pyserving replay` verifies it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from pyserving.adapters.event_log import read_events
from pyserving.engine.events import FrontendExited, FrontendStarted
from tests.reliability.conftest import report
from tests.reliability.models import write_version
from tests.util.metrics import sample_value
from tests.util.proc_stats import frontend_pids, process_figures
from tests.util.processes import ServerProcess, free_port, run_python
from tests.util.traffic import LoadThreads
from tests.util.waiting import eventually

WORKERS = 2
CHANNELS = 16  # each its own connection: the kernel spreads them over the front-ends


def start(tmp_path: Path, *flags: str) -> ServerProcess:
    write_version(tmp_path / "m", 1, factor=2.0)
    server = ServerProcess(
        [
            "--model_name=m",
            f"--model_base_path={tmp_path / 'm'}",
            "--model_platform=python",
            f"--workers={WORKERS}",
            f"--rest_api_port={free_port()}",
            f"--event_log={tmp_path / 'events.jsonl'}",
            *flags,
        ],
        tmp_path / "server.log",
    )
    server.wait_serving(timeout=120)
    return server


def request() -> predict_pb2.PredictRequest:
    message = predict_pb2.PredictRequest()
    message.model_spec.name = "m"
    message.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.5], np.float32)))
    return message


def own_channel(port: int) -> grpc.Channel:
    """A channel with a connection of its own (grpc shares them between equal channels)."""
    return grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


class Traffic(LoadThreads):
    """CHANNELS threads, each on its own connection, sending Predict back to back."""

    def __init__(self, port: int) -> None:
        self.outcomes: list[tuple[int, float, str]] = []  # (channel, time, code name)
        self._channels = [own_channel(port) for _ in range(CHANNELS)]
        self._message = request()
        super().__init__(CHANNELS)

    def call(self, index: int) -> None:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channels[index])
        try:
            reply = stub.Predict(self._message, timeout=10)
            assert list(reply.outputs["y"].float_val) == [3.0], reply
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
            time.sleep(0.01)  # a gone front-end: try again, as clients do
        self.outcomes.append((index, time.time(), code))

    def ok_since(self, since: float) -> set[int]:
        return {c for c, t, code in list(self.outcomes) if t > since and code == "OK"}

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for channel in self._channels:
            channel.close()


def frontend_events(tmp_path: Path, kind: type) -> list:
    return [e for e in read_events(tmp_path / "events.jsonl") if isinstance(e, kind)]


def wait_restarted(server: ServerProcess, tmp_path: Path, timeout: float) -> None:
    """Until the event log says a front-end slot was started again (its first restart)."""
    server.wait_for(
        lambda: any(e.restarts == 1 for e in frontend_events(tmp_path, FrontendStarted)),
        timeout,
        "a front-end started again in its slot",
        0.02,
    )


def test_a_killed_frontend_comes_back_while_the_other_serves(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        first = frontend_pids(server.process.pid)
        assert len(first) == WORKERS, first
        with Traffic(server.port) as traffic:
            server.wait_for(
                lambda: len(traffic.ok_since(0)) == CHANNELS, 60, "every channel answered", 0.02
            )
            killed_at = time.time()
            os.kill(first[0], signal.SIGKILL)
            wait_restarted(server, tmp_path, 30)
            (back,) = [e for e in frontend_events(tmp_path, FrontendStarted) if e.restarts == 1]
            back_at = back.time  # it listens again
            # Every channel, the killed one's reconnected, is answered again.
            server.wait_for(
                lambda: len(traffic.ok_since(back_at)) == CHANNELS,
                60,
                "every channel answered again",
                0.02,
            )
        outcomes = list(traffic.outcomes)
        during = {c for c, t, code in outcomes if killed_at < t < back_at and code == "OK"}
        failed = [code for _, _, code in outcomes if code != "OK"]
        report(
            "workers",
            back_listening_s=round(back_at - killed_at, 3),
            requests=len(outcomes),
            failed=len(failed),
            channels_served_meanwhile=len(during),
        )
        assert set(failed) <= {"UNAVAILABLE"}, sorted(set(failed))
        assert during, "no client was answered while the killed front-end was away"
        failing_channels = {c for c, _, code in outcomes if code != "OK"}
        assert failing_channels != set(range(CHANNELS)), "every client saw the kill"
        assert os.path.exists(f"/proc/{first[1]}"), "the other front-end went too"
    finally:
        assert server.stop() == 0
    exits = frontend_events(tmp_path, FrontendExited)
    killed = [e for e in exits if e.pid == first[0]]
    assert killed and killed[0].signal == "SIGKILL" and killed[0].restarting, exits
    restarted = [e for e in frontend_events(tmp_path, FrontendStarted) if e.restarts == 1]
    assert [e.worker for e in restarted] == [killed[0].worker], restarted
    assert restarted[0].time - killed[0].time < 2.0, "back after more than 2 s"
    # The stop's exits: drained, exit 0, not started again.
    assert (
        sorted((e.exit_code, e.restarting) for e in exits if e is not killed[0])
        == [(0, False)] * WORKERS
    )
    replay = run_python("-m", "pyserving", "replay", str(tmp_path / "events.jsonl"), timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "VERIFIED" in replay.stdout
    assert f"(pid {first[0]}) killed by SIGKILL; the engine starts it again" in replay.stdout


def test_a_hung_frontend_is_killed_and_started_again(tmp_path: Path) -> None:
    """A stopped front-end (SIGSTOP: what a deadlocked loop looks like from outside) keeps
    its listening socket; the engine notices its silence, kills it and starts its slot
    again, so new connections are answered; the healthy one is left alone."""
    server = start(tmp_path, "--frontend_liveness_timeout_seconds=3")
    try:
        first = frontend_pids(server.process.pid)
        assert len(first) == WORKERS, first
        stopped_at = time.time()
        os.kill(first[0], signal.SIGSTOP)
        wait_restarted(server, tmp_path, 60)
        for _ in range(CHANNELS):  # new connections, wherever the kernel puts them
            channel = own_channel(server.port)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert list(stub.Predict(request(), timeout=10).outputs["y"].float_val) == [3.0]
            channel.close()
        assert os.path.exists(f"/proc/{first[1]}"), "the healthy front-end was killed"
    finally:
        assert server.stop() == 0
    exits = frontend_events(tmp_path, FrontendExited)
    unresponsive = [e for e in exits if e.unresponsive]
    assert [(e.pid, e.signal, e.restarting) for e in unresponsive] == [
        (first[0], "SIGKILL", True)
    ], exits
    assert unresponsive[0].time - stopped_at >= 3.0, "killed before its timeout"
    assert "frontend_unresponsive" in server.log_text()
    replay = run_python("-m", "pyserving", "replay", str(tmp_path / "events.jsonl"), timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"(pid {first[0]}) stopped answering; the engine killed it with SIGKILL" in (
        replay.stdout
    )


def test_the_frontends_exit_when_the_engine_is_killed(tmp_path: Path) -> None:
    server = start(tmp_path)
    pids = frontend_pids(server.process.pid)
    assert len(pids) == WORKERS
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(30)
    server.stop()
    eventually(
        lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids),
        10,
        0.02,
        "every front-end to exit with its engine",
    )


def test_one_scrape_counts_every_process_once_and_keeps_a_restarted_ones(
    tmp_path: Path,
) -> None:
    import urllib.request

    server = start(tmp_path)
    rest_port = int(
        next(a for a in server.process.args if a.startswith("--rest_api_port=")).split("=")[1]
    )

    def count() -> float:
        url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        tf_name = sample_value(  # the parser names a counter's sample NAME_total
            text, ":tensorflow:serving:request_count_total", {"model_name": "m", "status": "OK"}
        )
        ours = sample_value(
            text,
            "pyserving_requests_total",
            {"model": "m", "api": "Predict", "code": "OK"},
        )
        assert tf_name == ours, (tf_name, ours)  # both names, the same requests
        return tf_name or 0.0

    try:
        sent = 0
        channels = [own_channel(server.port) for _ in range(CHANNELS)]
        for channel in channels:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(5):
                stub.Predict(request(), timeout=10)
                sent += 1
        server.wait_for(lambda: count() == sent, 10, f"the scrape to count {sent}", 0.02)
        pids = frontend_pids(server.process.pid)
        for pid in pids:  # after serving: still no TensorFlow runtime, and a small process
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "libtensorflow" not in maps and "_pywrap_tensorflow" not in maps
            assert process_figures(pid).rss_mib < 150, process_figures(pid)
        os.kill(pids[0], signal.SIGKILL)
        server.wait_for(
            lambda: len(set(frontend_pids(server.process.pid)) - set(pids)) == 1,
            30,
            "the killed front-end to start again",
            0.02,
        )
        assert count() == sent  # the killed front-end's requests stay counted
        for channel in channels:
            channel.close()
    finally:
        assert server.stop() == 0


def test_a_frontend_started_by_hand_exits_when_its_engine_goes(tmp_path: Path) -> None:
    """No PR_SET_PDEATHSIG here (no --engine_pid): the engine's socket going is enough."""
    from tests.util.ipc_echo import ipc_address, spawn_ready
    from tests.util.processes import spawn

    with ipc_address() as address:
        engine = spawn_ready([sys.executable, "-m", "bench.echo_engine", address])
        port = free_port()
        frontend = spawn(
            [
                sys.executable,
                "-m",
                "pyserving.api.frontend",
                f"--engine_address={address}",
                f"--port={port}",
                "--model_name=mnist",
                "--model_base_path=/unused",
            ],
            tmp_path / "frontend.log",
        )
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=30)  # it listens
            engine.kill()
            engine.wait()
            assert frontend.wait(timeout=30) == 1, (tmp_path / "frontend.log").read_text()
        finally:
            engine.kill()
            frontend.kill()
    assert "engine_gone" in (tmp_path / "frontend.log").read_text()
