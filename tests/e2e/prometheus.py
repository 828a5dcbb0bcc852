"""A real Prometheus for tests: the shipped scrape config, pointed at a test's port.

Dashboards are read from `dashboards/*.json`; `panel_queries` lists every PromQL
expression of every panel with Grafana's variables substituted.
"""

from __future__ import annotations

import json
import math
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import ROOT
from tests.util.processes import free_port
from tests.util.requirements import require_binary
from tests.util.waiting import eventually

DASHBOARDS = ROOT / "dashboards"
SHIPPED_CONFIG = DASHBOARDS / "prometheus.yml"
PROMETHEUS_HINT = "apt-get install prometheus (as .ci/run does)"


def scrape_config_for(target: str, scrape_interval: str = "1s") -> dict[str, Any]:
    """The shipped prometheus.yml with only its target and intervals changed."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    return config


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        binary = require_binary("prometheus", PROMETHEUS_HINT)
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(scrape_config_for(target)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                return reply.status == 200

        eventually(
            ready, timeout, 0.2, "prometheus to be ready", (urllib.error.URLError, ConnectionError)
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{url}: {exc.code} {exc.read().decode()[:2000]}") from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def wait_for(self, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until `expr` returns data (after a scrape), and return it."""
        return eventually(
            lambda: self.query(expr),
            timeout,
            0.25,
            lambda: f"data for {expr}; targets: {self.api('targets')}",
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.expr[:40]}"


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def panel_queries() -> list[PanelQuery]:
    return [
        PanelQuery(name, panel["title"], target["expr"])
        for name, dashboard in load_dashboards().items()
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, window: str, all_value: str = ".*") -> str:
    """Grafana's variables: the rate interval becomes `window`; `$model`, `$job` (and TF
    Serving's dashboard's `$model_name`, `$instance`) mean All."""
    out = expr.replace("$__rate_interval", window)
    for name in ("model_name", "instance", "model", "job"):
        out = out.replace(f"${{{name}}}", all_value).replace(f"${name}", all_value)
    assert "$" not in out, f"unsubstituted Grafana variable in {expr!r}"
    return out
