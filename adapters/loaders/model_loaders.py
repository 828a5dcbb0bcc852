"""One loader per served model, from its platform, with warm-up wrapped around it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from pyserving.adapters.loaders.platforms import PlatformOptions, fingerprint, make_loader
from pyserving.adapters.loaders.warmup import AnswerRecord, WarmingLoader
from pyserving.engine.events import Event
from pyserving.engine.servable import Loader


@dataclass(frozen=True)
class WarmupOptions:
    """--enable_model_warmup: how a warm-up record is answered, and how many times."""

    answer: AnswerRecord
    iterations: int = 1


class ModelLoaders:
    """Model name → its loader (the manager's `loader_for`), warm-up wrapped around.

    The manager asks once per aspired version; the platform is the one the config in
    force names then (`platform_of`), so a model whose platform changed by a reload gets
    the new platform's loader for its next versions.
    """

    def __init__(
        self,
        platform_options: PlatformOptions,
        publish: Callable[[Event], object],
        platform_of: Callable[[str], str],
        warmup: WarmupOptions | None = None,
    ) -> None:
        self._platform_options = platform_options
        self._publish = publish
        self._platform_of = platform_of
        self._warmup = warmup
        self._loaders: dict[tuple[str, str], Loader] = {}
        self._lock = threading.Lock()

    def __call__(self, model: str) -> Loader:
        platform_name = self._platform_of(model)
        with self._lock:
            loader = self._loaders.get((model, platform_name))
            if loader is None:
                loader = make_loader(platform_name, self._platform_options)
                if self._warmup is not None:
                    loader = WarmingLoader(
                        loader, model, self._warmup.answer, self._warmup.iterations, self._publish
                    )
                self._loaders[(model, platform_name)] = loader
            return loader

    def fingerprint(self, model: str, path: str) -> str:
        """The fingerprint of `model`'s version at `path`, as its platform computes it."""
        return fingerprint(self._platform_of(model), self._platform_options, path)
