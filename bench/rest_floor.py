"""The REST floor: an aiohttp server that parses a `:predict` JSON body and answers a canned
prediction of the real shape. What HTTP/1.1 + JSON in Python costs, with no model.
`python -m bench.rest_floor --port=PORT`.
"""

from __future__ import annotations

import argparse

import orjson
from aiohttp import web

CANNED = orjson.dumps({"predictions": [[0.1] * 10]})


async def predict(request: web.Request) -> web.Response:
    document = orjson.loads(await request.read())
    if "instances" not in document and "inputs" not in document:
        return web.json_response({"error": "no instances"}, status=400)
    return web.Response(body=CANNED, content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    app = web.Application()
    app.router.add_post("/v1/models/{name}:predict", predict)
    web.run_app(app, host="127.0.0.1", port=parser.parse_args().port, access_log=None)


if __name__ == "__main__":
    main()
