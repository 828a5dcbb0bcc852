"""ServableId: one value for a version's identity, equal to the (model, version) pair it
replaces, so every key built either way finds the same entry."""

from __future__ import annotations

from pyserving.engine.events import LoadFailed, Transition, VersionLabelsSet
from pyserving.engine.servable_id import ServableId
from pyserving.engine.servable_map import ServableHandle
from tests.servables import ConstantServable


def test_a_servable_id_is_its_pair() -> None:
    sid = ServableId("mnist", 2)
    assert sid == ("mnist", 2) and hash(sid) == hash(("mnist", 2))
    assert {("mnist", 2): "x"}[sid] == "x"
    model, version = sid
    assert (model, version, str(sid)) == ("mnist", 2, "mnist v2")
    assert sorted([ServableId("b", 1), ServableId("a", 9), ServableId("a", 2)]) == [
        ("a", 2),
        ("a", 9),
        ("b", 1),
    ]


def test_facts_about_one_version_and_handles_name_it() -> None:
    transition = Transition(model="m", version=3, src="new", dst="loading", trigger="load")
    failed = LoadFailed("m", 3, "boom", 1, False, 0.1)
    assert transition.servable_id == failed.servable_id == ServableId("m", 3)
    assert isinstance(transition.servable_id, ServableId)
    assert not hasattr(VersionLabelsSet(model="m", labels={}), "servable_id")
    assert ServableHandle("m", 4, ConstantServable(4)).servable_id == ("m", 4)
