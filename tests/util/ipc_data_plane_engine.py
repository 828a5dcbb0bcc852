"""An engine process serving the data plane over the transport, for its tests.

`python -m tests.util.ipc_data_plane_engine ADDRESS ROOT [--no-repository]` binds ADDRESS
and serves the in-process data plane of `tests.util.views.ViewsEngine` over folders it
makes under ROOT (model `m`, versions 1 and 2, `RecordingServable`: y = 2x on
serving_default; the views over a real manager, live config and repository), as the
engine process of `--workers` will; prints "ready" and serves until killed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from pyserving.adapters.ipc import EngineEndpoint
from pyserving.adapters.ipc.engine_services import Generation, engine_handler
from pyserving.adapters.logging_setup import configure_logging
from tests.util.ipc_echo import spawn_ready
from tests.util.views import ViewsEngine

NO_REPOSITORY = "--no-repository"


async def serve(address: str, root: Path, repository: bool) -> None:
    configure_logging("console", "warning")  # stdout is for "ready" alone
    engine = ViewsEngine(root, repository)
    handler = engine_handler(  # as the server's engine composes it, with no services
        engine.plane,
        {},
        Generation(lambda: engine.live.current),
        Generation(lambda: engine.lifecycle.map.snapshot),
    )
    endpoint = EngineEndpoint(address, handler)
    endpoint.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def spawn_data_plane_engine(
    address: str, root: Path, repository: bool = True
) -> subprocess.Popen[str]:
    flags = [] if repository else [NO_REPOSITORY]
    module = "tests.util.ipc_data_plane_engine"
    return spawn_ready([sys.executable, "-m", module, address, str(root), *flags])


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2]), NO_REPOSITORY not in sys.argv[3:]))
