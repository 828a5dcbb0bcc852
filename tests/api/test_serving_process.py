"""What the serving process does to itself at start-up: the cyclic collector's view of it."""

from __future__ import annotations

from tests.util.processes import run_python

SERVE_AND_UNLOAD = """
import asyncio, gc, sys, weakref
from pathlib import Path
from pyserving.api.cli import build_parser
from pyserving.api.flags import server_options
from pyserving.api.server import ModelServer
from tests.example_models import export_half_plus_two_tf1
from tests.util.processes import free_port
from tests.util.waiting import eventually_async

base = Path(sys.argv[1])
export_half_plus_two_tf1(base / "1")

async def main():
    flags = ["serve", f"--port={free_port()}", "--model_name=m", f"--model_base_path={base}"]
    server = ModelServer(server_options(build_parser().parse_args(flags)))
    await server.start()
    frozen = gc.get_freeze_count()
    await eventually_async(lambda: "m" in server.servable_map.snapshot, 120, 0.05, "m to load")
    graph = weakref.ref(server.servable_map.snapshot["m"].versions[1].servable._graph)
    await server.stop("test")
    gc.collect()
    print(frozen, graph() is None)

asyncio.run(main())
"""


def test_start_up_objects_are_frozen_and_an_unloaded_versions_graph_is_still_collected(
    tmp_path,
) -> None:
    """A full collection of what start-up made (TensorFlow's modules) pauses the loop for
    ~270 ms; frozen, it is skipped. Frozen before the first load, so a version's Graph
    (cyclic: its ops point back at it) is still collected once the version is unloaded."""
    result = run_python("-c", SERVE_AND_UNLOAD, str(tmp_path), timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    frozen, collected = result.stdout.split()[-2:]
    assert int(frozen) > 100_000  # TensorFlow alone makes ~300k tracked objects
    assert collected == "True"
