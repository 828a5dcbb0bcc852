"""The REST floor: an aiohttp server that parses a `:predict` JSON body and answers a canned
prediction of the real shape. What HTTP/1.1 + JSON in Python costs, with no model.
`python -m bench.rest_floor --port=PORT [--event_loop=uvloop|asyncio]` (see bench/floor.py).
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from aiohttp import web

from pyserving.api.serving_loop import EVENT_LOOPS, run_on_loop

CANNED = orjson.dumps({"predictions": [[0.1] * 10]})


async def predict(request: web.Request) -> web.Response:
    document = orjson.loads(await request.read())
    if "instances" not in document and "inputs" not in document:
        return web.json_response({"error": "no instances"}, status=400)
    return web.Response(body=CANNED, content_type="application/json")


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/models/{name}:predict", predict)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"REST floor listening on {port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--event_loop", choices=EVENT_LOOPS, default="uvloop")
    args = parser.parse_args()
    run_on_loop(serve(args.port), args.event_loop)


if __name__ == "__main__":
    main()
