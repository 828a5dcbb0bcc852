"""A version's fingerprint: fingerprint.pb's as TensorFlow reads it, else pyserving's digest of
the model's files; and the harness that records it on the load's fact and the version's handle."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import tensorflow as tf

from pyserving.adapters.loaders.platforms import PYTHON, TENSORFLOW, PlatformOptions, fingerprint
from pyserving.adapters.loaders.provenance import (
    FINGERPRINT_FILE,
    file_digest,
    saved_model_fingerprint,
)
from pyserving.engine.events import LoadSucceeded
from pyserving.engine.harness import LoadAttempts, LoaderHarness
from pyserving.engine.load_timeout import TimedLoads
from tests.servables import ConstantLoader
from tests.tf_serving_testdata import half_plus_two_tflite
from tests.util.python_models import write_scaling_version

OPTIONS = PlatformOptions()


class Scaler(tf.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = tf.Variable(factor)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x * self.factor}


def export(path: Path, factor: float) -> Path:
    model = Scaler(factor)
    tf.saved_model.save(model, str(path), signatures=model.__call__)
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("exports")
    return export(root / "a" / "1", 2.0), export(root / "b" / "1", 3.0)


def test_a_saved_model_is_known_by_its_fingerprint_pb_as_tensorflow_reads_it(
    exports: tuple[Path, Path],
) -> None:
    first, second = exports
    found = fingerprint(TENSORFLOW, OPTIONS, str(first))
    expected = tf.saved_model.experimental.read_fingerprint(str(first)).singleprint()
    assert found == f"saved_model:{expected}"
    # Same graph, other variables: the checkpoint hash tells them apart.
    assert saved_model_fingerprint(str(second)) != found


def test_without_fingerprint_pb_the_digest_covers_the_graph_and_the_variables(
    exports: tuple[Path, Path], tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(exports[0], tmp_path / "1"))
    (copy / FINGERPRINT_FILE).unlink()
    digest = saved_model_fingerprint(str(copy))
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert saved_model_fingerprint(str(copy)) == digest  # stable
    (copy / "assets.extra").mkdir()
    (copy / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"warm-up")
    assert saved_model_fingerprint(str(copy)) == digest  # warm-up records are not the model
    shutil.rmtree(copy / "variables")
    shutil.copytree(exports[1] / "variables", copy / "variables")  # other variables
    assert saved_model_fingerprint(str(copy)) != digest


def test_a_python_model_is_known_by_the_digest_of_its_folder(tmp_path: Path) -> None:
    folder = write_scaling_version(tmp_path, 1, factor=2.0)
    digest = fingerprint(PYTHON, OPTIONS, str(folder))
    assert digest == file_digest(folder, [p for p in folder.rglob("*") if p.is_file()])
    other = write_scaling_version(tmp_path / "other", 1, factor=3.0)
    assert fingerprint(PYTHON, OPTIONS, str(other)) != digest


def test_a_served_tflite_model_is_known_by_its_file(exports: tuple[Path, Path], tmp_path: Path):
    folder = Path(shutil.copytree(exports[0], tmp_path / "1"))
    (folder / "model.tflite").write_bytes(half_plus_two_tflite())
    tflite = fingerprint(TENSORFLOW, PlatformOptions(prefer_tflite_model=True), str(folder))
    assert tflite == file_digest(folder, [folder / "model.tflite"])
    assert fingerprint(TENSORFLOW, OPTIONS, str(folder)).startswith("saved_model:")


def harness(published: list, fingerprinter) -> LoaderHarness:
    return LoaderHarness(
        "m",
        1,
        "/m/1",
        published.append,
        ConstantLoader(),
        LoadAttempts(max_num_load_retries=0),
        TimedLoads(0.0, max_abandoned=1),
        threading.Event(),
        fingerprinter=fingerprinter,
    )


def test_the_load_fact_and_the_handle_carry_the_fingerprint() -> None:
    published: list = []
    h = harness(published, lambda path: f"sha256:{path}")
    h.load()
    [loaded] = [e for e in published if isinstance(e, LoadSucceeded)]
    assert loaded.fingerprint == "sha256:/m/1"
    h.start_load("test")
    handle = h.load_succeeded(loaded.duration_s)
    assert handle is not None and handle.fingerprint == "sha256:/m/1"


def test_an_unreadable_fingerprint_never_fails_the_load() -> None:
    published: list = []

    def broken(path: str) -> str:
        raise OSError("gone")

    harness(published, broken).load()
    [loaded] = [e for e in published if isinstance(e, LoadSucceeded)]
    assert loaded.fingerprint == ""
