"""The `python` platform: model.py folders load, answer every API's plan, and unload."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, regression_pb2

from pyserving.adapters.loaders.platforms import (
    KNOWN_PLATFORMS,
    PYTHON,
    PlatformOptions,
    make_loader,
    marker_files,
    platform,
)
from pyserving.adapters.loaders.python_loader import PythonLoader, PythonModelError
from pyserving.adapters.sources.storage_path import StoragePathSource
from pyserving.api.tfserving.example_plans import plan_regress
from pyserving.api.tfserving.warmup_requests import predict_request_plan
from pyserving.engine.errors import Code, ServingError
from pyserving.engine.request_core import PlanOptions, run_now
from pyserving.engine.signature_checks import check_inputs
from tests.example_models import example
from tests.util.python_models import write_scaling_version

OPTIONS = PlanOptions(method_name_check=True)


def predict_request(x: np.ndarray, signature: str = "") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "py"
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x.astype(np.float32)))
    return request


def test_registry_knows_both_platforms() -> None:
    assert KNOWN_PLATFORMS == ("tensorflow", "python")
    for name in KNOWN_PLATFORMS:
        assert make_loader(name, PlatformOptions()).platform == name
    assert marker_files(PYTHON) == ("model.py",)
    with pytest.raises(
        ValueError, match="unknown model_platform 'onnx': use one of tensorflow, python"
    ):
        platform("onnx")


def test_load_predict_and_unload(tmp_path: Path) -> None:
    marker = tmp_path / "unloaded"
    path = write_scaling_version(tmp_path / "py", 1, factor=10.0, unload_marker=marker)
    servable = PythonLoader().load(str(path))
    assert set(servable.signatures) == {"serving_default", "regress", "label"}
    reply = run_now(
        servable, predict_request_plan(servable, predict_request(np.ones((2, 2))), OPTIONS), 1
    )
    assert list(reply.outputs["y"].float_val) == [20.0, 20.0]
    assert list(reply.outputs["version"].int64_val) == [1]
    labels = predict_request_plan(
        servable, predict_request(np.array([[0.1, 0.2], [1, 1]]), "label"), OPTIONS
    )
    assert list(run_now(servable, labels, 1).outputs["label"].string_val) == [b"small", b"big"]
    servable.unload()
    assert marker.read_text() == "1\n"


def test_declared_signatures_check_requests(tmp_path: Path) -> None:
    servable = PythonLoader().load(str(write_scaling_version(tmp_path / "py", 1, factor=1.0)))
    misshapen = predict_request_plan(servable, predict_request(np.ones((2, 3))), OPTIONS)
    with pytest.raises(ServingError, match=r"has shape \[2,3\] but the signature expects \[-1,2\]"):
        run_now(servable, misshapen, 1)  # no graph: the declaration refuses it, at run
    bad = predict_request_plan(servable, predict_request(np.array([[np.inf, 1.0]])), OPTIONS)
    with pytest.raises(ServingError, match="x must be finite") as error:
        run_now(servable, bad, 1)
    assert error.value.code is Code.INVALID_ARGUMENT
    check_inputs(servable.signatures["regress"], {"inputs": np.array([b"x"], dtype=object)})


def test_regress_on_examples(tmp_path: Path) -> None:
    servable = PythonLoader().load(str(write_scaling_version(tmp_path / "py", 1, factor=3.0)))
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "py"
    request.model_spec.signature_name = "regress"
    request.input.example_list.examples.extend([example(1.0), example(2.0)])
    reply = run_now(servable, plan_regress(servable, request, OPTIONS), 1)
    assert [r.value for r in reply.result.regressions] == [3.0, 6.0]


def test_metadata_describes_declared_signatures(tmp_path: Path) -> None:
    servable = PythonLoader().load(str(write_scaling_version(tmp_path / "py", 1, factor=1.0)))
    defs = servable.signature_def_map().signature_def
    assert defs["regress"].method_name == "tensorflow/serving/regress"
    assert defs["serving_default"].method_name == "tensorflow/serving/predict"
    x = defs["serving_default"].inputs["x"]
    assert x.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in x.tensor_shape.dim] == [-1, 2]
    assert defs["regress"].inputs["inputs"].dtype == tf.string.as_datatype_enum


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "declares no SIGNATURES"),
        ("raise RuntimeError('boom')\n", "importing .*model.py failed: RuntimeError: boom"),
        (
            "SIGNATURES = {'s': {'inputs': {'x': 'float32'}}}\ndef predict(s, i): pass\n",
            "tensor 'x' must be declared as \\(dtype, shape\\)",
        ),
        (
            "SIGNATURES = {'s': {'function': 'missing'}}\n",
            "calls missing\\(\\), which the module lacks",
        ),
    ],
)
def test_broken_model_py_fails_the_load(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.py").write_text(source)
    with pytest.raises(PythonModelError, match=message):
        PythonLoader().load(str(tmp_path / "1"))


def test_versions_do_not_share_module_state(tmp_path: Path) -> None:
    one = PythonLoader().load(str(write_scaling_version(tmp_path / "py", 1, factor=1.0)))
    two = PythonLoader().load(str(write_scaling_version(tmp_path / "py", 2, factor=5.0)))
    x = {"x": np.ones((1, 2), np.float32)}
    assert one.run("serving_default", x, ["y"])["y"].tolist() == [2.0]
    assert two.run("serving_default", x, ["y"])["y"].tolist() == [10.0]


def test_source_aspires_python_folders_by_their_marker(tmp_path: Path) -> None:
    write_scaling_version(tmp_path / "py", 4, factor=1.0)
    (tmp_path / "py" / "5").mkdir()  # no model.py yet: not a version
    published = []
    source = StoragePathSource(
        "py", str(tmp_path / "py"), published.append, poll_wait_s=0, marker_files=["model.py"]
    )
    time.sleep(0.01)
    event = source.poll_once()
    assert event is not None and [v.version for v in event.versions] == [4]
