"""Big work on a thread, so the event loop that serves every other client keeps turning.

One threshold for every place that decodes, copies or encodes a request's tensors: the
codecs (api/envelope/tensor_budget.py) and a front-end's transport to the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# Work on at least this many bytes runs on a thread. Measured (numpy 2, the 2-CPU dev VM):
# filling 1 MiB of float32 takes ~0.3 ms and a thread hop ~0.1 ms; at 256 KiB the hop and
# the work cost about the same, and below it the hop would cost more than it saves.
OFF_LOOP_BYTES = 256 * 1024


async def off_loop_if_big(size: int, function: Callable[..., Any], *args: Any) -> Any:
    """Run `function(*args)` on a thread when `size` bytes are big, so the loop stays free."""
    if size >= OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)
