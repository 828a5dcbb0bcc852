"""An engine process serving the data plane over the transport, for its tests.

`python -m tests.util.ipc_data_plane_engine ADDRESS` binds ADDRESS and serves model `m`
(versions 1 and 2, `RecordingServable`: y = 2x on serving_default) through the in-process
data plane, as the engine process of `--workers` will; prints "ready" and serves until
killed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from pyserving.adapters.ipc import EngineEndpoint
from pyserving.adapters.ipc.data_plane import data_plane_handler
from pyserving.engine.data_plane import InProcessDataPlane
from pyserving.engine.request_core import PlanOptions, RequestCore
from pyserving.engine.runner import DirectRunner
from pyserving.engine.servable_map import ServableHandle, ServableMap
from tests.servables import RecordingServable
from tests.util.ipc_echo import spawn_ready


async def serve(address: str) -> None:
    servable_map = ServableMap()
    for version in (1, 2):
        servable_map.add(ServableHandle("m", version, RecordingServable()))
    plane = InProcessDataPlane(RequestCore(servable_map, DirectRunner(2)), PlanOptions())
    endpoint = EngineEndpoint(address, data_plane_handler(plane))
    endpoint.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def spawn_data_plane_engine(address: str) -> subprocess.Popen[str]:
    return spawn_ready([sys.executable, "-m", "tests.util.ipc_data_plane_engine", address])


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
