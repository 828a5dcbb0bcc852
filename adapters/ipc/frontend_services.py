"""A front-end's side of the engine's services (engine_services.py): its requests counted by
the engine, the whole exposition fetched from it, and the request-log settings of the
config in force followed through the config's generation.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import structlog

from pyserving.adapters.ipc.engine_side import Answer
from pyserving.adapters.ipc.frontend_side import EngineClient
from pyserving.adapters.model_config import ModelConfig, RequestLogConfig, ServerConfig
from pyserving.engine.errors import ServingError

log = structlog.get_logger("pyserving.frontend")

# How long a finished request's observation may wait to be sent with others: what a scrape
# may lag behind the requests answered (a message per request would cost the engine more).
SHIP_INTERVAL_S = 0.02


class ObservationShipper:
    """Collects this front-end's finished requests, and its request log's records written
    and dropped, and sends them to the engine in batches (made on the running loop)."""

    def __init__(self, client: EngineClient, interval_s: float = SHIP_INTERVAL_S) -> None:
        self._client = client
        self._interval_s = interval_s
        self._loop = asyncio.get_running_loop()
        self._batch: list[tuple[str, str, str, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        # The request log's writer thread counts here; the loop ships the counts.
        self._log_lock = threading.Lock()
        self._log_counts: Counter[str] = Counter()  # "written", or a drop reason

    def add(self, model: str, api: str, code: str, seconds: float) -> None:
        self._batch.append((model, api, code, seconds))
        self._arm()

    def request_log_written(self) -> None:
        """For the request log's `on_written` (any thread)."""
        self._count_log("written")

    def request_log_drop(self, reason: str) -> None:
        """For the request log's `on_drop` (any thread); `reason` is a drop reason."""
        self._count_log(reason)

    def _count_log(self, key: str) -> None:
        with self._log_lock:
            self._log_counts[key] += 1
        self._loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(self._interval_s, self._send_soon)

    def _send_soon(self) -> None:
        task = asyncio.create_task(self._send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def flush(self) -> None:
        """Send what is collected now, and wait for the batches already on their way (a
        scrape counts them first). Only this waits: two timed sends that waited for each
        other would both wait forever, and every scrape behind them."""
        await self._send()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _send(self) -> None:
        """Send what is collected now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        with self._log_lock:
            log_counts, self._log_counts = dict(self._log_counts), Counter()
        if batch or log_counts:
            params = {"observations": batch, "request_log": log_counts}
            try:
                await self._client.call("observe", params, timeout_s=10.0)
            except ServingError as error:  # the engine is gone: the process exits anyway
                log.warning("observations_lost", requests=len(batch), reason=error.message)


class EngineExposition:
    """The metrics page of the whole server, as the engine renders it."""

    def __init__(self, client: EngineClient, shipper: ObservationShipper) -> None:
        self._client = client
        self._shipper = shipper

    async def __call__(self) -> bytes:
        await self._shipper.flush()  # this front-end's own requests, counted before it asks
        answer = await self._client.call("metrics", timeout_s=30.0)
        return bytes(answer.params["text"])


class ConfigFollowingClient:
    """An EngineClient whose answers' config generation keeps `request_logs` current: on a
    new generation the settings are fetched before the answer is returned, so a request is
    logged as the config the engine answered it under says."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.generation = -1
        self.config = ServerConfig(())
        self._refreshing: asyncio.Task[None] | None = None

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        tensors: Mapping[str, np.ndarray] | None = None,
        timeout_s: float | None = None,
    ) -> Answer:
        answer = await self.client.call(method, params, tensors, timeout_s)
        generation = answer.params.get("generation")
        if generation is not None and generation != self.generation:
            await self.refresh()
        return answer

    async def refresh(self) -> None:
        """Fetch the settings once, however many requests saw the new generation at once."""
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._fetch())
            self._refreshing.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        await asyncio.shield(self._refreshing)

    async def _fetch(self) -> None:
        answer = await self.client.call("request_logs", timeout_s=10.0)
        self.config = ServerConfig(
            tuple(
                ModelConfig(name, "", request_log=RequestLogConfig(rate, prefix))
                for name, rate, prefix in answer.params["models"]
            )
        )
        self.generation = answer.params["generation"]
