"""The data plane's transport between front-end processes and the engine process.

ZeroMQ (ROUTER on the engine, one DEALER per front-end, asyncio on both), msgpack headers
(msgspec Structs), tensors as raw buffers in their own frames or, from `SHM_THRESHOLD` up,
in shared memory a front-end lends. See messages.py for what crosses.
"""

from pyserving.adapters.ipc.engine_side import Answer, Call, EngineEndpoint, Handler
from pyserving.adapters.ipc.frontend_side import ClientOptions, EngineClient
from pyserving.adapters.ipc.shared_memory import SHM_THRESHOLD

__all__ = [
    "SHM_THRESHOLD",
    "Answer",
    "Call",
    "ClientOptions",
    "EngineClient",
    "EngineEndpoint",
    "Handler",
]
