"""--enable_per_model_batching_parameters on the loader's side: a version folder's
`batching_params.pbtxt`, read when the version loads and handed to the runner on the
servable (`batching_options`, None without the file; engine/per_version_batching.py).

As TF Serving's GetPerModelBatchingParams: a file that does not parse, or parameters
that cannot batch, fail the version's load, naming the file."""

from __future__ import annotations

import os

from pyserving.adapters.batching_config import options_from_proto
from pyserving.adapters.platform_config import BATCHING_PARAMS_FILE, read_batching_parameters
from pyserving.engine.batching_params import BatchingOptions
from pyserving.engine.servable import Loader, Servable


def version_batching_options(path: str) -> BatchingOptions | None:
    """The version's own batching parameters, or None when its folder has no file."""
    file = os.path.join(path, BATCHING_PARAMS_FILE)
    if not os.path.isfile(file):
        return None
    params = read_batching_parameters(file)
    try:
        return options_from_proto(params)
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from None


class VersionBatchingLoader:
    """Loads with `inner`, then gives the servable its folder's batching parameters."""

    def __init__(self, inner: Loader) -> None:
        self._inner = inner
        self.platform = inner.platform

    def load(self, path: str) -> Servable:
        options = version_batching_options(path)  # a bad file fails before the model loads
        servable = self._inner.load(path)
        # Not part of the Servable protocol: PerVersionBatchingRunner reads it with getattr.
        servable.batching_options = options  # type: ignore[attr-defined]
        return servable
