"""Each model_version_policy picks the aspired set TF Serving would."""

from __future__ import annotations

import pytest

from pyserving.adapters.sources.version_selection import (
    AllVersions,
    LatestVersions,
    SpecificVersions,
)

FOUND = [3, 1, 10, 2]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (LatestVersions(1), [10]),
        (LatestVersions(2), [10, 3]),
        (LatestVersions(9), [10, 3, 2, 1]),
        (AllVersions(), [1, 2, 3, 10]),
        (SpecificVersions((2, 3)), [2, 3]),
        (SpecificVersions((2, 7)), [2]),  # 7 is not there (yet): served once it is
    ],
)
def test_selection(policy, expected: list[int]) -> None:
    assert sorted(policy.select(FOUND)) == sorted(expected)
    assert policy.select([]) == []
