"""The two ways the end-to-end suites run a server: in-process and `--workers=2`.

One copy for every suite: `both_modes` parametrizes a test's `workers` argument (which
`start_server` and the other fixtures pass to `ServerProcess`), `WORKER_MODES` and
`WORKER_IDS` parametrize a module-scoped server fixture (`params=`, `ids=`)."""

from __future__ import annotations

import pytest

WORKER_MODES = (0, 2)
WORKER_IDS = ("in_process", "workers2")

both_modes = pytest.mark.parametrize("workers", WORKER_MODES, ids=WORKER_IDS)
