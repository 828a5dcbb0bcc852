"""The promotion gates file (`--promotion_gates_file`): which labels of which models move
only after their gates pass, and how each gate judges. TOML, read with the stdlib.

```toml
[[gate]]
model = "mnist"
label = "stable"
signature = true                      # signature compatibility (default: true)
requests = ["/logs/mnist-*.tfrecord"] # request-log / warm-up TFRecord files (globs)
max_requests = 100                    # at most this many, oldest first
time_bound_seconds = 60               # the whole gate; past it, the verdict fails
max_abs_diff = 1e-6                   # every output's default rule
p99_ratio = 2.0                       # new p99 / old p99 at most this (0 or absent: not gated)
max_cpu_share = 0.5                   # of one thread: the gate rests between requests

[gate.outputs.scores]                 # one output's own rule
top_k = 1                             # agreement of the top-k classes, instead of max_abs_diff
min_agreement = 0.99
```

A mistake stops start-up with a message naming the file, the gate and the field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from pyserving.engine.errors import ConfigurationError
from pyserving.engine.promotion_gates import GateConfig, OutputRule

GATE_KEYS = frozenset(
    {"model", "label", "signature", "requests", "max_requests", "time_bound_seconds"}
    | {"max_abs_diff", "p99_ratio", "outputs", "top_k", "min_agreement", "max_cpu_share"}
)
RULE_KEYS = frozenset({"max_abs_diff", "top_k", "min_agreement"})
_NO_RULE = OutputRule()  # the gate's own rule starts from the defaults


class PromotionConfigError(ConfigurationError):
    """The gates file cannot be used; the message names the file and the field."""


def load_promotion_gates(path: str) -> dict[tuple[str, str], GateConfig]:
    """(model, label) → its gates, from the file at `path` ("" → no gates)."""
    if not path:
        return {}
    try:
        with open(path, "rb") as stream:
            document = tomllib.load(stream)
    except OSError as exc:
        raise PromotionConfigError(f"--promotion_gates_file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PromotionConfigError(f"--promotion_gates_file {path}: not TOML: {exc}") from None
    return parse_promotion_gates(document, path)


def parse_promotion_gates(
    document: Mapping[str, Any], path: str
) -> dict[tuple[str, str], GateConfig]:
    unknown = sorted(set(document) - {"gate"})
    if unknown:
        raise PromotionConfigError(f"{path}: unknown table {unknown[0]!r} (give [[gate]] entries)")
    gates = document.get("gate", [])
    if not isinstance(gates, list):
        raise PromotionConfigError(f"{path}: 'gate' must be an array of tables ([[gate]])")
    configs: dict[tuple[str, str], GateConfig] = {}
    for index, entry in enumerate(gates, start=1):
        where = f"{path}: gate {index}"
        config = _gate(entry, where)
        key = (config.model, config.label)
        if key in configs:
            raise PromotionConfigError(f"{where}: model {key[0]!r} label {key[1]!r} is gated twice")
        configs[key] = config
    return configs


def _gate(entry: Mapping[str, Any], where: str) -> GateConfig:
    unknown = sorted(set(entry) - GATE_KEYS)
    if unknown:
        raise PromotionConfigError(f"{where}: unknown field {unknown[0]!r}")
    model = _text(entry, "model", where)
    label = _text(entry, "label", where)
    where = f"{where} ({model}/{label})"
    requests = entry.get("requests", [])
    if isinstance(requests, str):
        requests = [requests]
    if not isinstance(requests, list) or not all(isinstance(r, str) and r for r in requests):
        raise PromotionConfigError(f"{where}: 'requests' must be a list of file paths or globs")
    signature = entry.get("signature", True)
    if not isinstance(signature, bool):
        raise PromotionConfigError(f"{where}: 'signature' must be true or false")
    outputs = entry.get("outputs", {})
    if not isinstance(outputs, dict):
        raise PromotionConfigError(f"{where}: 'outputs' must be a table of output → rule")
    default = _rule(entry, where, _NO_RULE)
    config = GateConfig(
        model=model,
        label=label,
        signature=signature,
        request_files=tuple(requests),
        max_requests=int(_number(entry, "max_requests", where, 100, minimum=1)),
        default_rule=default,
        outputs={
            name: _rule(rule, f"{where} output {name!r}", default) for name, rule in outputs.items()
        },
        p99_ratio=_number(entry, "p99_ratio", where, 0.0, minimum=0.0),
        time_bound_s=_number(entry, "time_bound_seconds", where, 60.0, minimum=0.001),
        max_cpu_share=_number(entry, "max_cpu_share", where, 0.5, minimum=0.01),
    )
    if config.max_cpu_share > 1:
        raise PromotionConfigError(f"{where}: 'max_cpu_share' is a share, 0.01 to 1")
    if not config.signature and not config.request_files:
        raise PromotionConfigError(
            f"{where}: no gate to run (signature = false and no 'requests' to compare on)"
        )
    if config.p99_ratio and not config.request_files:
        raise PromotionConfigError(f"{where}: 'p99_ratio' needs 'requests' to time")
    return config


def _rule(entry: Any, where: str, default: OutputRule) -> OutputRule:
    if not isinstance(entry, dict):
        raise PromotionConfigError(f"{where}: a rule must be a table")
    unknown = sorted(set(entry) - (GATE_KEYS if default is _NO_RULE else RULE_KEYS))
    if unknown:
        raise PromotionConfigError(f"{where}: unknown field {unknown[0]!r}")
    top_k = int(_number(entry, "top_k", where, default.top_k, minimum=0))
    agreement = _number(entry, "min_agreement", where, default.min_agreement, minimum=0.0)
    if agreement > 1:
        raise PromotionConfigError(f"{where}: 'min_agreement' is a share, 0 to 1; got {agreement}")
    return OutputRule(
        max_abs_diff=_number(entry, "max_abs_diff", where, default.max_abs_diff, minimum=0.0),
        top_k=top_k,
        min_agreement=agreement,
    )


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise PromotionConfigError(f"{where}: '{key}' is required (a non-empty string)")
    return value


def _number(
    entry: Mapping[str, Any], key: str, where: str, default: float, minimum: float
) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise PromotionConfigError(
            f"{where}: '{key}' must be a number >= {minimum:g}; got {value!r}"
        )
    return float(value)
