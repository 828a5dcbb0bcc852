"""A request's tensor budget: claims are counted per dtype, across inputs, before allocation."""

from __future__ import annotations

import numpy as np
import pytest

from pyserving.api.envelope.tensor_budget import OBJECT_ELEMENT_BYTES, TensorBudget
from pyserving.engine.errors import Code, ServingError, quoted


def test_claims_are_counted_by_dtype_and_add_up_across_inputs() -> None:
    budget = TensorBudget(max_elements=1 << 20, max_bytes=1000)
    assert budget.claim("a", (10, 10), np.dtype(np.float32)) == 100  # 400 bytes
    assert budget.claim("b", (4,), np.dtype(object), extra=8) == 4  # 4 * 64 + 8
    assert budget.used == 400 + 4 * OBJECT_ELEMENT_BYTES + 8
    with pytest.raises(ServingError) as caught:
        budget.claim("c", (40,), np.dtype(np.complex128))  # 640 more: past 1000
    error = caught.value
    assert error.code == Code.RESOURCE_EXHAUSTED
    assert "input 'c'" in error.message and "640 bytes" in error.message
    assert "1304" in error.message and "--max_request_tensor_bytes" in error.message


def test_the_element_cap_is_checked_before_the_bytes() -> None:
    budget = TensorBudget(max_elements=100, max_bytes=1 << 40)
    with pytest.raises(ServingError) as caught:
        budget.claim("x", (101,), np.dtype(np.uint8))
    assert "101 elements" in caught.value.message and budget.used == 0


def test_a_long_client_string_is_cut_and_marked() -> None:
    assert quoted("short") == "short"
    cut = quoted("m" * 1000)
    assert len(cut) < 300 and cut.endswith("...[744 more characters cut]")
