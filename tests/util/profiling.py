"""A profiler capture taken while requests run: the server must trace real model work.

TF Serving's profiler test and ours both send requests in a loop, wait for the first
answer (so the capture cannot start before the model is being called), capture, then
stop the loop; this is that sequence once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tests.util.processes import ServerProcess


def trace_under_traffic(
    server: ServerProcess,
    request_once: Callable[[], object],
    logdir: Path,
    duration_ms: int,
    attempts: int,
    pause_s: float = 0.0,
) -> list[object]:
    """Capture `duration_ms` of `server`'s profiler into `logdir` while `request_once` runs
    in a loop (every `pause_s`); it returns a failure, or None when answered right. The
    failures seen."""
    import tensorflow as tf

    stop, answered, failures = threading.Event(), [], []

    def traffic() -> None:
        while not stop.is_set():
            failure = request_once()
            if failure is not None:
                failures.append(failure)
            answered.append(failure is None)
            stop.wait(pause_s)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        server.wait_for(lambda: answered, 30, "the first answer before the capture")
        tf.profiler.experimental.client.trace(
            f"grpc://127.0.0.1:{server.port}",
            str(logdir),
            duration_ms,
            num_tracing_attempts=attempts,
        )
    finally:
        stop.set()
        thread.join(timeout=60)
    return failures
