"""One loader per served model, from its platform, with warm-up wrapped around it."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable

from pyserving.adapters.loaders.registry import PlatformOptions, make_loader
from pyserving.adapters.loaders.warmup import WarmingLoader
from pyserving.api.flag_compat import tensorflow_threads
from pyserving.api.request_plans import PlanOptions
from pyserving.api.warmup_replay import make_replay
from pyserving.engine.events import Event
from pyserving.engine.servable import Loader


def plan_options(options: argparse.Namespace) -> PlanOptions:
    return PlanOptions(
        method_name_check=options.enable_signature_method_name_check,
        max_elements=options.grpc_max_message_bytes,
    )


class ModelLoaders:
    """Model name → its loader (the `loader_for` the manager takes), warm-up wrapped around.

    The platform comes from the config in force when a load starts, so a model whose
    platform changed by a reload gets the new platform's loader.
    """

    def __init__(
        self,
        options: argparse.Namespace,
        publish: Callable[[Event], object],
        platform_of: Callable[[str], str],
    ) -> None:
        self._options = options
        self._publish = publish
        self._platform_of = platform_of
        intra, inter = tensorflow_threads(options)
        self._platform_options = PlatformOptions(
            saved_model_tags=tuple(t for t in options.saved_model_tags.split(",") if t),
            intra_op_threads=intra,
            inter_op_threads=inter,
            prefer_tflite_model=options.prefer_tflite_model,
            use_tflite_model=options.use_tflite_model,
            num_tflite_pools=options.num_tflite_pools,
            num_tflite_interpreters_per_pool=options.num_tflite_interpreters_per_pool,
        )
        self._replay = make_replay(plan_options(options))
        self._loaders: dict[tuple[str, str], Loader] = {}
        self._lock = threading.Lock()

    def __call__(self, model: str) -> Loader:
        platform_name = self._platform_of(model)
        with self._lock:
            loader = self._loaders.get((model, platform_name))
            if loader is None:
                loader = make_loader(platform_name, self._platform_options)
                if self._options.enable_model_warmup:
                    loader = WarmingLoader(
                        loader,
                        model,
                        self._replay,
                        self._options.num_request_iterations_for_warmup,
                        self._publish,
                    )
                self._loaders[(model, platform_name)] = loader
            return loader
