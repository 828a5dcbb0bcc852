"""`pyserving compare OLD_DIR NEW_DIR --requests FILES`: the promotion gates, offline.

The same gates the server runs before a gated label moves (engine/promotion_gates.py),
on two SavedModel (or `--platform=python`) version folders, so a CI pipeline can stop
an export before it reaches a server. The rules come from the flags, or from one gate
of a promotion gates file (`--gates_file F --model M --label L`; its `requests` are
used unless --requests is given). Exit status: 0 when every gate passes, 1 when one
fails, 2 when the command cannot run as asked (a folder that does not load, an
unreadable file).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyserving.engine.promotion_gates import GateConfig

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_compare_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "compare",
        help="run the promotion gates on two SavedModel folders (exit 1 if one fails)",
        description="Load OLD_DIR and NEW_DIR (SavedModel version folders), check that NEW "
        "has every signature, input and output of OLD with the same dtype and a compatible "
        "shape, run the recorded predict requests of --requests (request-log or warm-up "
        "TFRecord files) on both and compare each output (max absolute difference, or top-k "
        "class agreement) and the p99 latency; print a table. Exits 0 when every gate "
        "passes, 1 when one fails, 2 when it cannot run.",
    )
    parser.add_argument("old", metavar="OLD_DIR", help="the version serving now")
    parser.add_argument("new", metavar="NEW_DIR", help="the version to promote")
    parser.add_argument(
        "--requests", nargs="+", default=None, metavar="FILE", help="TFRecord files (globs)"
    )
    parser.add_argument("--max_requests", type=int, default=100, metavar="N")
    parser.add_argument(
        "--max_abs_diff", type=float, default=1e-6, help="every output's bound (default 1e-6)"
    )
    parser.add_argument(
        "--top_k",
        action="append",
        default=[],
        metavar="OUTPUT=K",
        help="compare OUTPUT by agreement of its top K classes instead (repeatable)",
    )
    parser.add_argument("--min_agreement", type=float, default=1.0, help="for --top_k (0..1)")
    parser.add_argument(
        "--p99_ratio", type=float, default=0.0, help="new p99 / old p99 at most this (0: off)"
    )
    parser.add_argument("--time_bound_seconds", type=float, default=600.0)
    parser.add_argument(
        "--platform",
        default="tensorflow",
        choices=("tensorflow", "python"),
        help="how both folders load, as model_platform (default: tensorflow)",
    )
    parser.add_argument("--gates_file", default="", help="take the rules from this gates file")
    parser.add_argument("--model", default="", help="with --gates_file: the gate's model")
    parser.add_argument("--label", default="", help="with --gates_file: the gate's label")
    parser.set_defaults(func=run_compare)


def run_compare(options: argparse.Namespace) -> int:
    from pyserving.adapters.promotion_config import PromotionConfigError

    try:
        config = _config(options)
    except (PromotionConfigError, ValueError) as exc:
        return _usage(str(exc))
    from pyserving.adapters.tensorflow_import import import_tensorflow

    import_tensorflow(verbose=False)
    from pyserving.adapters.loaders.platforms import PlatformOptions, make_loader
    from pyserving.api.commands.promotion_requests import requests_for
    from pyserving.api.commands.warmup_from_logs import WarmupFromLogsError
    from pyserving.engine.promotion_gates import run_gates, verdict

    loader = make_loader(options.platform, PlatformOptions())
    try:
        old, new = loader.load(options.old), loader.load(options.new)
    except Exception as exc:
        return _usage(f"cannot load a SavedModel: {type(exc).__name__}: {exc}")
    try:
        results = run_gates(config, old, new, lambda: requests_for(config))
    except WarmupFromLogsError as exc:
        return _usage(str(exc))
    finally:
        old.unload()
        new.unload()
    passed, reason = verdict(results)
    print(f"{'gate':10} {'result':6}  figures")
    for result in results:
        figures = ", ".join(f"{k}={v:.6g}" for k, v in result.figures.items())
        print(f"{result.gate:10} {'pass' if result.passed else 'FAIL':6}  {figures}")
        if result.reason:
            print(f"{'':17} {result.reason}")
    print(("PASSED: " if passed else "FAILED: ") + reason)
    return EXIT_PASSED if passed else EXIT_FAILED


def _config(options: argparse.Namespace) -> GateConfig:
    from pyserving.adapters.promotion_config import load_promotion_gates
    from pyserving.engine.promotion_gates import GateConfig, OutputRule

    requests = tuple(options.requests or ())
    if options.gates_file:
        gates = load_promotion_gates(options.gates_file)
        key = (options.model, options.label)
        if key not in gates:
            known = ", ".join(f"{m}/{label}" for m, label in sorted(gates)) or "none"
            raise ValueError(
                f"{options.gates_file} has no gate for --model {options.model!r} --label "
                f"{options.label!r} (it has: {known})"
            )
        config = gates[key]
        return dataclasses.replace(config, request_files=requests or config.request_files)
    default = OutputRule(max_abs_diff=options.max_abs_diff, min_agreement=options.min_agreement)
    outputs = {}
    for item in options.top_k:
        name, _, k = item.partition("=")
        if not name or not k.isdigit() or int(k) < 1:
            raise ValueError(f"--top_k {item!r}: give OUTPUT=K with K >= 1")
        outputs[name] = dataclasses.replace(default, top_k=int(k))
    if options.p99_ratio and not requests:
        raise ValueError("--p99_ratio needs --requests to time")
    return GateConfig(
        model="",
        label="",
        request_files=requests,
        max_requests=options.max_requests,
        default_rule=default,
        outputs=outputs,
        p99_ratio=options.p99_ratio,
        time_bound_s=options.time_bound_seconds,
    )


def _usage(message: str) -> int:
    print(f"pyserving compare: error: {message}", file=sys.stderr)
    return EXIT_USAGE
