"""The table and the JSON: one row per target and concurrency, and the ratios the issue asks."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: benches of lean processes import this module too
    from bench.loadgen import LoadResult
    from bench.targets import Target

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    target: str
    concurrency: int
    throughput: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    mean_batch: float | None
    requests: int
    errors: dict[str, int]
    server_cpu_ms: float | None = None  # the server process's CPU time per request

    @classmethod
    def from_result(
        cls, target: str, result: LoadResult, mean_batch: float | None, cpu_s: float | None
    ) -> Row:
        return cls(
            target=target,
            concurrency=result.concurrency,
            throughput=result.throughput,
            p50_ms=result.percentile_ms(50),
            p99_ms=result.percentile_ms(99),
            mean_batch=mean_batch,
            requests=result.requests,
            errors=dict(result.errors),
            server_cpu_ms=None if cpu_s is None else cpu_s * 1e3 / max(result.sent, 1),
        )

    @classmethod
    def ceiling(cls, concurrency: int, measured: dict[str, float]) -> Row:
        """The model alone at the batch size the batching server formed at this level."""
        return cls(
            target="ceiling",
            concurrency=concurrency,
            throughput=measured["throughput"],
            p50_ms=measured["p50_ms"],
            p99_ms=measured["p99_ms"],
            mean_batch=measured["batch_size"],
            requests=0,
            errors={},
        )

    def line(self) -> str:
        batch = "-" if self.mean_batch is None else f"{self.mean_batch:.1f}"
        errors = sum(self.errors.values())
        cpu = "-" if self.server_cpu_ms is None else f"{self.server_cpu_ms:.3f}"
        return (
            f"{self.target:<14} {self.concurrency:>4} {self.throughput:>10.0f} "
            f"{self.p50_ms:>8.2f} {self.p99_ms:>8.2f} {batch:>7} {cpu:>8} {errors:>7}"
        )


HEADER = (
    f"{'target':<14} {'conc':>4} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'batch':>7} "
    f"{'cpu ms':>8} {'errors':>7}"
)


def _find(rows: list[Row], target: str, concurrency: int) -> Row | None:
    return next((r for r in rows if r.target == target and r.concurrency == concurrency), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def ratios(rows: list[Row], batched: str) -> dict[str, float | None]:
    def get(target: str, c: int, field: str) -> float | None:
        row = _find(rows, target, c)
        return None if row is None else getattr(row, field)

    return {
        "batched_vs_unbatched_c64": _ratio(
            get(batched, 64, "throughput"), get("unbatched", 64, "throughput")
        ),
        "batched_vs_floor_c64": _ratio(
            get(batched, 64, "throughput"), get("floor", 64, "throughput")
        ),
        "p99_batched_vs_floor_c10": _ratio(get(batched, 10, "p99_ms"), get("floor", 10, "p99_ms")),
    }


TARGETS = {
    "batched_vs_unbatched_c64": 2.0,
    "batched_vs_floor_c64": 0.7,
    "p99_batched_vs_floor_c10": 2.0,
}


def build_report(
    rows: list[Row], targets: list[Target], args: argparse.Namespace, batched: str
) -> dict[str, Any]:
    by_target: dict[str, Any] = {}
    for row in rows:
        entry = by_target.setdefault(row.target, {"results": {}})
        entry["results"][str(row.concurrency)] = asdict(row)
    for target in targets:
        by_target[target.name]["description"] = target.description
        by_target[target.name]["command"] = target.command[2:]
    if "ceiling" in by_target:
        by_target["ceiling"]["description"] = (
            f"the SavedModel in-process at {batched}'s mean batch size"
        )
    measured = {row.target for row in rows}
    alternatives = {
        name: ratios(rows, name)
        for name in ("batched", "batched_tuned")
        if name != batched and name in measured
    }
    return {
        "ratios": ratios(rows, batched),
        "ratios_target": batched,
        "ratio_goals": TARGETS,
        "ratios_other": alternatives,
        "targets": by_target,
        "table": [asdict(r) for r in rows],
        "settings": {
            "quick": args.quick,
            "mode": args.mode,
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "max_requests": args.max_requests,
            "concurrency": args.levels,
        },
    }


def print_table(report: dict[str, Any]) -> None:
    rows = [Row(**r) for r in report["table"]]
    print()
    print(HEADER)
    for c in sorted({r.concurrency for r in rows}):
        for row in rows:
            if row.concurrency == c:
                print(row.line())
        print()
    print(f"ratios ({report['ratios_target']}):")
    for name, value in report["ratios"].items():
        goal = report["ratio_goals"][name]
        better = "<=" if name.startswith("p99") else ">="
        print(f"  {name:<28} {value}   (goal {better} {goal})")
    for target, values in report["ratios_other"].items():
        print(f"ratios ({target}): " + ", ".join(f"{k}={v}" for k, v in values.items()))


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> None:
    """A plain table of `rows`: each column is (key, heading, format spec such as ".1f")."""
    widths = [
        max(len(heading), *(len(format(row[key], spec)) for row in rows))
        for key, heading, spec in columns
    ]
    print("  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths, strict=True)))
    for row in rows:
        cells = (format(row[k], s).rjust(w) for (k, _, s), w in zip(columns, widths, strict=True))
        print("  ".join(cells))


def write_results(name: str, report: dict[str, Any], folder: Path = RESULTS) -> Path:
    """Write `report` as bench/results/NAME.json (gitignored) and say where."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out
