"""Labels move only to available versions, and never vanish while their version serves."""

from __future__ import annotations

import pytest

from pyserving.engine.errors import Code
from pyserving.engine.events import LabelMoved
from pyserving.engine.labels import effective_labels
from tests.servables import GatedLoader
from tests.util.lifecycle import Lifecycle
from tests.util.waiting import eventually


@pytest.mark.parametrize(
    ("desired", "current", "available", "allow", "expected"),
    [
        ({"c": 2}, {}, {1, 2}, False, {"c": 2}),  # available: points there
        ({"c": 2}, {}, set(), False, {"c": 2}),  # nothing before: recorded, resolves later
        ({"c": 2}, {"c": 1}, {1}, False, {"c": 1}),  # 2 not yet: stays on serving 1
        ({"c": 2}, {"c": 1}, {1, 2}, False, {"c": 2}),  # 2 available: moves
        ({"c": 2}, {"c": 1}, set(), False, {"c": 2}),  # 1 gone anyway: record 2
        ({"c": 2}, {"c": 1}, {1}, True, {"c": 2}),  # TF Serving's flag: moves at once
        ({}, {"c": 1}, {1}, False, {}),  # removed from the config: removed
    ],
)
def test_effective_labels(desired, current, available, allow, expected) -> None:
    assert effective_labels(desired, current, available, allow) == expected


def test_label_set_before_its_version_loaded_resolves_once_it_is_available() -> None:
    loader = GatedLoader(gated=["/m/1"])
    h = Lifecycle(loader)
    h.label(stable=1)
    h.aspire(1, wait=False)
    assert h.code("stable") == Code.NOT_FOUND  # recorded, not yet resolvable
    assert h.code("nope") == Code.NOT_FOUND  # no version of m serves yet: NOT_FOUND first
    loader.open("/m/1")
    h.wait_label("stable", 1)
    assert h.code("nope") == Code.INVALID_ARGUMENT
    h.close()


def test_label_stays_on_the_serving_version_until_the_new_one_is_available() -> None:
    loader = GatedLoader(gated=["/m/2"])
    h = Lifecycle(loader)
    h.label(stable=1, canary=1)
    h.aspire(1, wait=False)
    h.wait_label("canary", 1)
    h.aspire(1, 2, wait=False)  # 2 loading, gated
    h.label(stable=1, canary=2)
    assert h.map.resolve("m", label="canary") == 1  # not moved to a loading version
    loader.open("/m/2")
    h.wait_label("canary", 2)
    assert h.map.resolve("m", label="stable") == 1
    moves = [(e.label, e.previous, e.version) for e in h.events if isinstance(e, LabelMoved)]
    assert moves == [("canary", None, 1), ("stable", None, 1), ("canary", 1, 2)]
    h.close()


def test_a_failed_version_never_gets_the_label() -> None:
    loader = GatedLoader(failing=["/m/2"])
    h = Lifecycle(loader)
    h.label(canary=1)
    h.aspire(1, wait=False)
    h.wait_label("canary", 1)
    h.aspire(1, 2, wait=False)
    h.label(canary=2)
    eventually(
        lambda: any(s.state == "error" for s in h.manager.statuses("m") or []),
        message="version 2 in error",
    )
    h.bus.wait_idle(5)
    assert h.map.resolve("m", label="canary") == 1
    h.close()


def test_allow_flag_moves_the_label_at_once() -> None:
    loader = GatedLoader(gated=["/m/2"])
    h = Lifecycle(loader, allow_unavailable=True)
    h.label(canary=1)
    h.aspire(1, wait=False)
    h.wait_label("canary", 1)
    h.aspire(1, 2, wait=False)
    h.label(canary=2)
    assert h.code("canary") == Code.NOT_FOUND  # TF Serving's meaning: points at 2 already
    loader.open("/m/2")
    h.wait_label("canary", 2)
    h.close()


def test_removing_the_labels_removes_them() -> None:
    h = Lifecycle(GatedLoader())
    h.label(stable=1)
    h.aspire(1, wait=False)
    h.wait_label("stable", 1)
    h.label()
    assert h.code("stable") == Code.INVALID_ARGUMENT
    h.close()
