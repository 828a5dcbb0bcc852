"""README.md's quickstart, run: its `pyserving serve` line, its two curl lines and its
Python client against a real server with the tutorial's trained model. Only the ports
and the model folder are changed (free ports; the session's trained model)."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from tests.e2e.conftest import TrainedModels
from tests.util.processes import QUIET_ENV, ROOT, ServerProcess, run_python, serving


def quickstart_blocks() -> tuple[list[str], list[str], str]:
    """(the serve block's lines, the curl block's lines, the Python block)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    shell = [body.replace("\\\n", "") for lang, body in blocks if lang == "sh"]
    python = [body for lang, body in blocks if lang == "python"]
    assert len(shell) == 2 and len(python) == 1, blocks
    return shell[0].splitlines(), shell[1].splitlines(), python[0]


@pytest.fixture(scope="module")
def quickstart_server(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    serve_lines, _, _ = quickstart_blocks()
    [serve] = [line for line in serve_lines if line.startswith("pyserving serve")]
    flags = dict(word.split("=", 1) for word in shlex.split(serve)[2:])
    assert set(flags) == {"--port", "--rest_api_port", "--model_name", "--model_base_path"}
    with serving(
        [
            f"--model_name={flags['--model_name']}",
            f"--model_base_path={trained_models.export_dir}",
        ],
        tmp_path_factory.mktemp("quickstart") / "server.log",
        rest=True,
    ) as server:
        yield server


def run_shell(line: str, server: ServerProcess) -> str:
    line = line.replace("localhost:8501", f"127.0.0.1:{server.rest_port}")
    line = re.sub(r"\bpython\b", shlex.quote(sys.executable), line)
    result = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, env=QUIET_ENV, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_quickstart_curl_and_python_client_answer_alike(
    quickstart_server: ServerProcess,
) -> None:
    _, curl_lines, python_block = quickstart_blocks()
    status_line, predict_line = curl_lines
    status = json.loads(run_shell(status_line, quickstart_server))
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    rest_scores = json.loads(run_shell(predict_line, quickstart_server))["predictions"]
    assert np.array(rest_scores).shape == (1, 10)

    code = python_block.replace("localhost:8500", f"127.0.0.1:{quickstart_server.port}")
    result = run_python("-c", code, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    grpc_scores = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert len(grpc_scores) == 10
    np.testing.assert_allclose(grpc_scores, rest_scores[0], rtol=1e-6)
    assert abs(sum(grpc_scores) - 1.0) < 1e-4  # softmax scores
