"""What a front-end pays to import TF Serving's messages: time and memory, in fresh processes.

`python -m bench.frontend_imports [--rounds=5]` starts one interpreter per row and round,
runs the row's imports, and reads the child's VmRSS from /proc while it waits. Rows:
- `empty`: the interpreter alone;
- `tensorflow_serving`: `from tensorflow_serving.apis import predict_pb2`, as clients do
  (it runs tensorflow/__init__.py: all of TensorFlow);
- `api_protos`: pyserving.adapters.tf_protos.import_api_protos() (every tensorflow_serving.apis
  and .config module, grpc included, without TensorFlow's runtime);
- `api_protos+api`: that, then pyserving's protocol modules a front-end serves with.
Medians over the rounds; `import s` is timed inside the child, `ready s` from spawn to the
child's report. Writes bench/results/frontend_imports.json. The issue's goal for a front-end:
ready within 1.5 s, at most 150 MiB RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from bench.report import print_rows, write_results
from tests.util.proc_stats import process_figures
from tests.util.processes import QUIET_ENV, ROOT

API_MODULES = (
    "pyserving.api.tfserving.prediction_service",
    "pyserving.api.tfserving.model_service",
    "pyserving.api.tfserving.rest_api",
    "pyserving.api.envelope.http_server",
)
ROWS = {
    "empty": "",
    "tensorflow_serving": "from tensorflow_serving.apis import predict_pb2",
    "api_protos": (
        "from pyserving.adapters.tf_protos import import_api_protos\nimport_api_protos()"
    ),
    "api_protos+api": (
        "from pyserving.adapters.tf_protos import import_api_protos\nimport_api_protos()\n"
        + "\n".join(f"import {module}" for module in API_MODULES)
    ),
}
CHILD = """
import json, sys, time
started = time.perf_counter()
{imports}
print(json.dumps({{
    "import_s": time.perf_counter() - started,
    "runtime": "tensorflow.python" in sys.modules,
}}), flush=True)
sys.stdin.readline()
"""


def one_round(imports: str) -> dict[str, float | bool]:
    spawned = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(imports=imports)],
        cwd=ROOT,
        env=QUIET_ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    line = child.stdout.readline()
    ready_s = time.perf_counter() - spawned
    if not line:
        raise SystemExit(f"child failed: exit {child.wait()}")
    figures = process_figures(child.pid)
    child.stdin.close()
    child.wait(timeout=30)
    reported = json.loads(line)
    return {
        "import_s": reported["import_s"],
        "ready_s": ready_s,
        "rss_mib": figures.rss_mib,
        "runtime": reported["runtime"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    samples: dict[str, list[dict[str, float | bool]]] = {name: [] for name in ROWS}
    for index in range(args.rounds):  # interleaved, so drifting load hits every row alike
        for name, imports in ROWS.items():
            samples[name].append(one_round(imports))
        print(f"round {index + 1}/{args.rounds}", file=sys.stderr)
    rows = []
    for name, runs in samples.items():
        rows.append(
            {
                "row": name,
                "import_s": statistics.median(float(r["import_s"]) for r in runs),
                "ready_s": statistics.median(float(r["ready_s"]) for r in runs),
                "rss_mib": statistics.median(float(r["rss_mib"]) for r in runs),
                "tensorflow_runtime": "yes" if any(r["runtime"] for r in runs) else "no",
            }
        )
    print()
    print_rows(
        rows,
        [
            ("row", "row", ""),
            ("import_s", "import s", ".3f"),
            ("ready_s", "ready s", ".3f"),
            ("rss_mib", "RSS MiB", ".0f"),
            ("tensorflow_runtime", "TF runtime", ""),
        ],
    )
    write_results(
        "frontend_imports",
        {"rounds": args.rounds, "rows": rows, "imports": ROWS, "python": sys.version},
    )


if __name__ == "__main__":
    main()
