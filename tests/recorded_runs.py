"""Record real event logs for replay tests: a real bus, manager, loader and log writer.

The loader is tests/servables.py's ConstantLoader (real loads, in process, no
TensorFlow); everything else is what `pyserving serve` composes, minus gRPC.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pyserving.adapters.event_log import EventLogWriter, last_sequence
from pyserving.engine.bus import EventBus
from pyserving.engine.events import (
    AspiredVersion,
    AspiredVersions,
    ServerStarted,
    ServerStopped,
    ShutdownRequested,
    VersionLabelsSet,
)
from pyserving.engine.manager import LoadAttempts, Manager
from pyserving.engine.policy import POLICIES
from pyserving.engine.servable_map import ServableMap
from pyserving.statemachines.servable_version import State
from tests.servables import ConstantLoader
from tests.util.lifecycle import settle


class RecordedServer:
    """One server run writing `log_path`; `crash()` stops it without a clean stop."""

    def __init__(
        self,
        log_path: Path,
        loader: ConstantLoader | None = None,
        policy: str = "availability",
        max_num_load_retries: int = 0,
        models: tuple[str, ...] = ("m",),
        fingerprints: bool = False,  # each load records "sha256:<its path>"
        **writer_options: Any,
    ) -> None:
        self.loader = loader or ConstantLoader()
        self.bus = EventBus(first_seq=last_sequence(log_path) + 1)
        self.map = ServableMap()
        self.manager = Manager(
            self.bus.publish,
            lambda _model: self.loader,
            self.map,
            policy=POLICIES[policy](),
            retry=LoadAttempts(max_num_load_retries, 0.0),
            fingerprint=(lambda _model, path: f"sha256:{path}") if fingerprints else None,
        )
        self.writer = EventLogWriter(log_path, **writer_options)
        self.bus.subscribe(self.manager.handle)
        self.bus.subscribe(self.writer)
        self.bus.start()
        self.bus.publish(
            ServerStarted(
                pyserving_version="test",
                flags={
                    "aspired_version_policy": policy,
                    "max_num_load_retries": max_num_load_retries,
                },
                models=models,
            )
        )

    def aspire(self, *versions: int, model: str = "m") -> None:
        self.bus.publish(
            AspiredVersions(
                model=model,
                versions=tuple(AspiredVersion(v, f"/{model}/{v}") for v in versions),
            )
        )
        self.settle()

    def set_labels(self, model: str = "m", **labels: int) -> None:
        """As a config (re)load does: the model's configured labels, wanted from now on."""
        self.bus.publish(VersionLabelsSet(model=model, labels=labels))
        self.settle()

    def settle(self) -> None:
        settle(self.bus, self.manager, timeout_s=20)

    def states(self) -> dict[tuple[str, int], str]:
        return {key: State(state).value for key, state in self.manager.states().items()}

    def stop(self) -> None:
        """As `pyserving serve` stops: shutdown, settle, footer, close."""
        self.bus.publish(ShutdownRequested(reason="test"))
        self.settle()
        self.manager.close()
        self.bus.wait_idle(10)
        self.bus.publish(ServerStopped(reason="test"))
        self.bus.stop()
        self.writer.close()

    def crash(self) -> None:
        """Stop dispatching and close the file, with no shutdown and no footer."""
        self.bus.wait_idle(10)
        self.bus.stop()
        self.manager.close()
        self.writer.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_records(path: Path, records: list[dict[str, Any]], renumber: bool = False) -> None:
    """Write records back as a log; `renumber` makes seq consecutive again (a careful forger)."""
    if renumber:
        first = records[0]["seq"]
        records = [{**r, "seq": first + i} for i, r in enumerate(records)]
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
