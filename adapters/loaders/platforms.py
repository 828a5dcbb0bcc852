"""Platform name (`model_platform` in the model config) → how to load its versions.

To add a platform: write a Loader (`platform` and `load(path) -> Servable`, see
engine/servable.py) in its own module here, and add one `Platform` entry below naming
the file(s) whose presence makes a version folder complete and how its versions are
fingerprinted (adapters/loaders/provenance.py). Warm-up, the lifecycle,
metrics and every API then work for it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyserving.adapters.loaders.provenance import (
    file_digest,
    folder_digest,
    saved_model_fingerprint,
)
from pyserving.adapters.sources.storage_path import SAVED_MODEL_FILES
from pyserving.engine.servable import Loader

if TYPE_CHECKING:
    from pyserving.adapters.loaders.tflite_loader import TFLiteOptions

TENSORFLOW = "tensorflow"
PYTHON = "python"
KNOWN_PLATFORMS = (TENSORFLOW, PYTHON)


@dataclass(frozen=True)
class PlatformOptions:
    """Server flags a platform's loader may need."""

    saved_model_tags: tuple[str, ...] = ("serve",)
    intra_op_threads: int = 0  # TF Serving's session parallelism flags, combined
    inter_op_threads: int = 0
    # The whole Session ConfigProto, serialized (api/tensorflow_settings: the session
    # config file, GPU memory fraction and threads, or the platform config file's); when
    # given, it is used as it is and the two thread counts above are not.
    session_config: bytes = b""
    # Told of Session loads, runs and builds (TF's own metrics); see tensorflow_loader.
    session_observer: Any = None
    prefer_tflite_model: bool = False  # TF Serving's TFLite flags (adapters/loaders/tflite_loader)
    use_tflite_model: bool = False
    num_tflite_pools: int = 1
    num_tflite_interpreters_per_pool: int = 1
    # --enable_per_model_batching_parameters: each version's batching_params.pbtxt is read
    per_model_batching: bool = False


@dataclass(frozen=True)
class Platform:
    name: str
    marker_files: tuple[str, ...]  # a version folder is loadable once it holds one of these
    make_loader: Callable[[PlatformOptions], Loader]
    # A loaded version folder → the fingerprint of the bytes it served from (provenance.py).
    fingerprint: Callable[[PlatformOptions, str], str]


def _tensorflow(options: PlatformOptions) -> Loader:
    from pyserving.adapters.loaders.tensorflow_loader import SessionOptions, TensorFlowLoader
    from pyserving.adapters.loaders.tflite_loader import SavedModelOrTFLiteLoader

    session = SessionOptions(
        options.intra_op_threads, options.inter_op_threads, config=options.session_config
    )
    saved_model = TensorFlowLoader(
        tags=options.saved_model_tags, session=session, observer=options.session_observer
    )
    tflite = _tflite_options(options)
    loader: Loader = saved_model
    if tflite.prefer or tflite.always:
        loader = SavedModelOrTFLiteLoader(saved_model, tflite)
    if options.per_model_batching:
        from pyserving.adapters.loaders.version_batching import VersionBatchingLoader

        loader = VersionBatchingLoader(loader)
    return loader


def _tflite_options(options: PlatformOptions) -> TFLiteOptions:
    from pyserving.adapters.loaders.tflite_loader import TFLiteOptions

    return TFLiteOptions(
        prefer=options.prefer_tflite_model,
        always=options.use_tflite_model,
        num_pools=options.num_tflite_pools,
        interpreters_per_pool=options.num_tflite_interpreters_per_pool,
    )


def _tensorflow_fingerprint(options: PlatformOptions, path: str) -> str:
    """model.tflite's digest where the loader served it (the same test), else the SavedModel's."""
    if _tflite_options(options).serves_tflite(path):
        return file_digest(Path(path), [Path(path) / TFLITE_MODEL_FILE])
    return saved_model_fingerprint(path)


def _python_fingerprint(options: PlatformOptions, path: str) -> str:
    return folder_digest(path)


def _python(options: PlatformOptions) -> Loader:
    from pyserving.adapters.loaders.python_loader import PythonLoader

    return PythonLoader()


# TF Serving's file-system source aspires every version folder; its bundle factory then
# loads model.tflite (with --prefer_tflite_model) or the SavedModel. A folder holding only
# model.tflite is therefore a version here too (it fails to load without the flag, as there).
TFLITE_MODEL_FILE = "model.tflite"

PLATFORMS: dict[str, Platform] = {
    TENSORFLOW: Platform(
        TENSORFLOW,
        (*SAVED_MODEL_FILES, TFLITE_MODEL_FILE),
        _tensorflow,
        _tensorflow_fingerprint,
    ),
    PYTHON: Platform(PYTHON, ("model.py",), _python, _python_fingerprint),
}
assert tuple(PLATFORMS) == KNOWN_PLATFORMS


def platform(name: str) -> Platform:
    try:
        return PLATFORMS[name]
    except KeyError:
        raise ValueError(
            f"unknown model_platform {name!r}: use one of {', '.join(KNOWN_PLATFORMS)}"
        ) from None


def make_loader(name: str, options: PlatformOptions) -> Loader:
    return platform(name).make_loader(options)


def fingerprint(name: str, options: PlatformOptions, path: str) -> str:
    """The fingerprint of a version of platform `name` loaded from `path`."""
    return platform(name).fingerprint(options, path)


def marker_files(name: str) -> Sequence[str]:
    return platform(name).marker_files
