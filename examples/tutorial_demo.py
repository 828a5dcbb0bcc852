#!/usr/bin/env python3
"""Run the README's tutorial end to end, exactly as a user would type it, and report.

Trains v1 (100 iterations) and v2 (2000), serves v1 from a watched folder, measures the
error rate with the example client, copies v2 in with `cp -r` while the server runs,
measures again, and stops the server. `make demo` runs this.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(*args: str) -> str:
    print("$ " + " ".join(args), flush=True)
    result = subprocess.run(args, env=ENV, stdout=subprocess.PIPE, text=True, check=True)
    print(result.stdout, end="", flush=True)
    return result.stdout


def wait_for_version(port: int, version: int, server: subprocess.Popen, timeout: float) -> None:
    """Poll GetModelStatus until `version` is AVAILABLE (the server loads in the background)."""
    from pyserving.adapters.tensorflow_import import import_tensorflow

    import_tensorflow()  # tensorflow_serving's protos import TensorFlow: without its C++ lines
    import grpc
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_service_pb2_grpc,
    )

    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"localhost:{port}"))
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "mnist"
    print(f"    waiting for version {version} to load (up to {timeout:.0f}s)", flush=True)
    started = time.monotonic()
    deadline, next_note = started + timeout, started + 5
    while time.monotonic() < deadline:
        if time.monotonic() >= next_note:  # a long wait says so, not a silent terminal
            print(
                f"    still waiting for version {version}: {next_note - started:.0f}s", flush=True
            )
            next_note += 5
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}; see its log")
        try:
            reply = stub.GetModelStatus(request, timeout=2)
            states = {s.version: s.state for s in reply.model_version_status}
            if states.get(version) == get_model_status_pb2.ModelVersionStatus.AVAILABLE:
                elapsed = time.monotonic() - started
                print(f"    version {version} is AVAILABLE after {elapsed:.1f}s", flush=True)
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"version {version} did not become available in {timeout}s")


def error_rate(output: str) -> float:
    match = re.search(r"Inference error rate: ([\d.]+)%", output)
    if not match:
        raise SystemExit("the client printed no error rate")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="/tmp/pyserving-demo", help="scratch folder")
    parser.add_argument("--port", type=int, default=9000, help="gRPC port for the server")
    parser.add_argument("--num_tests", type=int, default=1000, help="requests per client run")
    args = parser.parse_args()

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    model_dir, monitored = work / "mnist_model", work / "monitored"
    py = sys.executable

    step(
        "Train version 1 (100 iterations) and version 2 (2000 iterations); each run "
        "imports TensorFlow first (a few seconds), then prints its progress"
    )
    trainer = str(HERE / "mnist_saved_model.py")
    run(py, trainer, "--training_iteration=100", "--model_version=1", str(model_dir))
    run(py, trainer, "--training_iteration=2000", "--model_version=2", str(model_dir))

    step("Serve version 1 from a watched folder (the server imports TensorFlow: seconds)")
    monitored.mkdir(parents=True)
    run("cp", "-r", str(model_dir / "1"), str(monitored))
    log_path = work / "server.log"
    command = [
        py, "-m", "pyserving", "serve", f"--port={args.port}", "--model_name=mnist",
        f"--model_base_path={monitored}", f"--event_log={work / 'events.jsonl'}",
    ]  # fmt: skip
    print("$ " + " ".join(command) + f"  > {log_path} 2>&1 &", flush=True)
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    try:
        wait_for_version(args.port, 1, server, timeout=120)
        client = [
            py, str(HERE / "mnist_client.py"), f"--num_tests={args.num_tests}",
            f"--server=localhost:{args.port}", "--concurrency=10",
        ]  # fmt: skip
        print("    the client sends the requests (a progress bar on a terminal)", flush=True)
        first = error_rate(run(*client))

        step("Copy version 2 in while the server runs")
        run("cp", "-r", str(model_dir / "2"), str(monitored))
        wait_for_version(args.port, 2, server, timeout=120)
        second = error_rate(run(*client))
    finally:
        step("Stop the server (SIGTERM: drains, unloads, exits 0)")
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
        print(f"    server exited with code {code}; log: {log_path}", flush=True)

    step("Result")
    print(f"    version 1 error rate: {first:.1f}%")
    print(f"    version 2 error rate: {second:.1f}%")
    if second < first and code == 0:
        print("    OK: version 2 answers with a lower error rate")
        return 0
    print("    FAILED: expected a lower error rate from version 2 and a clean exit")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
