"""One loader per served model, from its platform, with warm-up wrapped around it."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable

from pyserving.adapters.loaders.registry import PlatformOptions, make_loader
from pyserving.adapters.loaders.warmup import WarmingLoader
from pyserving.api.request_plans import PlanOptions
from pyserving.api.warmup_replay import make_replay
from pyserving.engine.events import Event
from pyserving.engine.servable import Loader


def plan_options(options: argparse.Namespace) -> PlanOptions:
    return PlanOptions(
        method_name_check=options.enable_signature_method_name_check,
        max_elements=options.grpc_max_message_bytes,
    )


def model_loaders(
    models: Iterable[tuple[str, str]],
    options: argparse.Namespace,
    publish: Callable[[Event], object],
) -> dict[str, Loader]:
    """(model name, platform name) pairs → each model's loader (ValueError: bad platform)."""
    platform_options = PlatformOptions(
        saved_model_tags=tuple(t for t in options.saved_model_tags.split(",") if t)
    )
    replay = make_replay(plan_options(options))
    loaders: dict[str, Loader] = {}
    for name, platform_name in models:
        loader = make_loader(platform_name, platform_options)
        if options.enable_model_warmup:
            loader = WarmingLoader(
                loader, name, replay, options.num_request_iterations_for_warmup, publish
            )
        loaders[name] = loader
    return loaders
