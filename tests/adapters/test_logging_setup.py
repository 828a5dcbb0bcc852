"""Log lines from several processes sharing one stderr stay whole (the engine and its
front-ends with --workers), even unbuffered, as deploy/Dockerfile runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WRITER = """
import sys
from pyserving.adapters.logging_setup import configure_logging
import structlog
configure_logging("json", "info")
log = structlog.get_logger("test")
for i in range(int(sys.argv[1])):
    log.info("line", writer=sys.argv[2], i=i, padding="x" * 200)
"""


def test_lines_from_processes_sharing_stderr_never_run_into_each_other(tmp_path: Path) -> None:
    lines_each, writers = 3000, 4
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "stderr.log", "wb") as shared:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(lines_each), str(w)], stderr=shared, env=env
            )
            for w in range(writers)
        ]
        assert [p.wait(120) for p in processes] == [0] * writers
    records = [json.loads(line) for line in (tmp_path / "stderr.log").read_text().splitlines()]
    counts = {str(w): 0 for w in range(writers)}
    for record in records:
        counts[record["writer"]] += 1
    assert counts == {str(w): lines_each for w in range(writers)}
