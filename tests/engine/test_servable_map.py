"""The serving map: lookups, NOT_FOUND wording, and in-flight counting across an unload."""

from __future__ import annotations

import threading

import pytest

from pyserving.engine.errors import Code, ServingError
from pyserving.engine.servable_map import ServableHandle, ServableMap
from tests.servables import ConstantServable
from tests.util.waiting import eventually


def make_map(*versions: int) -> ServableMap:
    servable_map = ServableMap()
    for v in versions:
        servable_map.add(ServableHandle("mnist", v, ConstantServable(v)))
    return servable_map


def test_latest_and_specific() -> None:
    servable_map = make_map(1, 3, 2)
    with servable_map.acquire("mnist") as handle:
        assert handle.version == 3
    with servable_map.acquire("mnist", 1) as handle:
        assert handle.version == 1


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        ("nope", None, "Servable not found for request: Latest(nope)"),
        ("mnist", 9, "Servable not found for request: Specific(mnist, 9)"),
    ],
)
def test_not_found(model: str, version: int | None, message: str) -> None:
    with pytest.raises(ServingError) as info, make_map(1).acquire(model, version):
        pass
    assert info.value.code == Code.NOT_FOUND
    assert info.value.message == message


def test_removed_version_is_not_served_and_last_removal_drops_the_model() -> None:
    servable_map = make_map(1, 2)
    assert servable_map.remove("mnist", 2) is not None
    with servable_map.acquire("mnist") as handle:
        assert handle.version == 1
    servable_map.remove("mnist", 1)
    assert "mnist" not in servable_map.snapshot
    assert servable_map.remove("mnist", 1) is None


def test_unload_waits_for_the_last_request() -> None:
    servable_map = make_map(1)
    entered, finish = threading.Event(), threading.Event()
    results: list[int] = []

    def request() -> None:
        with servable_map.acquire("mnist") as handle:
            entered.set()
            finish.wait(5)
            results.append(int(handle.servable.run("", {}, ())["version"][0]))

    worker = threading.Thread(target=request)
    worker.start()
    assert entered.wait(5)
    handle = servable_map.remove("mnist", 1)
    assert handle is not None
    retired = threading.Event()

    def unload() -> None:
        handle.retire_and_wait()
        handle.servable.unload()
        retired.set()

    unloader = threading.Thread(target=unload)
    unloader.start()
    # The unload began: it now waits for the request in flight.
    eventually(lambda: handle.retiring, 5, 0.001, "the unload to begin")
    assert not handle.retire_and_wait(timeout=0)  # still one request in flight
    assert not retired.is_set()
    assert handle.in_flight == 1
    finish.set()
    worker.join(5)
    unloader.join(5)
    assert retired.is_set() and results == [1]
    assert not handle.acquire()  # retired handles take no new requests


def test_a_retired_handle_still_in_the_snapshot_is_skipped() -> None:
    servable_map = make_map(1)
    old = servable_map.snapshot["mnist"].versions[1]
    servable_map.add(ServableHandle("mnist", 2, ConstantServable(2)))
    servable_map.remove("mnist", 1)
    old.retire_and_wait()
    with servable_map.acquire("mnist") as handle:
        assert handle.version == 2
