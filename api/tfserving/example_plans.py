"""Classify, Regress and MultiInference as plans: the model calls a request needs, checked
against the servable before anything runs, and how their outputs become TF Serving's
reply. `RequestCore` (gRPC, REST) and warm-up (`run_now`) execute them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from google.protobuf.message import Message
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    model_pb2,
    regression_pb2,
)

from pyserving.api.envelope.request_records import fill_model_spec
from pyserving.api.tfserving.example_input import serialized_examples
from pyserving.engine import classify_regress as cr
from pyserving.engine.errors import Code, ServingError, invalid_argument
from pyserving.engine.request_core import Outputs, PlanOptions, RequestPlan
from pyserving.engine.runner import ModelCall
from pyserving.engine.servable import Servable, Signature
from pyserving.engine.servable_map import ServableHandle
from pyserving.engine.signature_checks import DEFAULT_SIGNATURE, check_inputs


# ---------------------------------------------------------------- Classify and Regress
def fill_classification_result(
    out: classification_pb2.ClassificationResult, found: cr.Classifications, n: int
) -> None:
    for i in range(n):
        classifications = out.classifications.add()
        for c in range(found.num_classes):
            cls = classifications.classes.add()
            if found.classes is not None:
                label = found.classes[i, c]
                cls.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else label
            if found.scores is not None:
                cls.score = float(found.scores[i, c])


def fill_regression_result(out: regression_pb2.RegressionResult, values: np.ndarray) -> None:
    for value in values.tolist():
        out.regressions.add().value = value


def _example_call(
    servable: Servable, signature_name: str, examples: np.ndarray, outputs: tuple[str, ...]
) -> ModelCall:
    signature = servable.signatures[signature_name]
    check_inputs(signature, {cr.INPUTS: examples})  # a non-string `inputs` is refused here
    return ModelCall(signature_name, {cr.INPUTS: examples}, outputs)


def _plan_single(
    servable: Servable,
    request: classification_pb2.ClassificationRequest | regression_pb2.RegressionRequest,
    options: PlanOptions,
    wanted_outputs: Callable[[Signature, bool], tuple[str, ...]],
    fill: Callable[[Message, Outputs, int], None],
    response_class: type[Message],
) -> RequestPlan[Message]:
    """Classify or Regress: one signature run on the request's examples."""
    signature = cr.find_signature(servable, request.model_spec.signature_name)
    wanted = wanted_outputs(signature, options.method_name_check)
    examples = serialized_examples(request.input)
    n = len(examples)

    def finish(results: Sequence[Outputs], served: ServableHandle) -> Message:
        response = response_class()
        # A Classification- or RegressionResponse: both have .result and .model_spec, which
        # their common type, protobuf's Message, lacks.
        fields: Any = response
        fill(fields.result, results[0], n)
        fill_model_spec(
            fields.model_spec,
            request.model_spec.name,
            served.version,
            signature.name,
        )
        return response

    return RequestPlan((_example_call(servable, signature.name, examples, wanted),), finish)


def _fill_classifications(out: Message, outputs: Outputs, n: int) -> None:
    fill_classification_result(out, cr.check_classifications(outputs, n), n)


def _fill_regressions(out: Message, outputs: Outputs, n: int) -> None:
    fill_regression_result(out, cr.check_regressions(outputs, n))


def plan_classify(
    servable: Servable, request: classification_pb2.ClassificationRequest, options: PlanOptions
) -> RequestPlan[Message]:
    return _plan_single(
        servable,
        request,
        options,
        cr.classification_outputs,
        _fill_classifications,
        classification_pb2.ClassificationResponse,
    )


def plan_regress(
    servable: Servable, request: regression_pb2.RegressionRequest, options: PlanOptions
) -> RequestPlan[Message]:
    return _plan_single(
        servable,
        request,
        options,
        cr.regression_outputs,
        _fill_regressions,
        regression_pb2.RegressionResponse,
    )


# ---------------------------------------------------------------------- MultiInference
def multi_inference_model_spec(
    request: inference_pb2.MultiInferenceRequest,
) -> model_pb2.ModelSpec:
    """The spec that picks the servable: the first task's, as TF Serving does."""
    if not request.tasks:
        raise invalid_argument("MultiInferenceRequest has no tasks: add at least one task")
    return request.tasks[0].model_spec


def plan_multi_inference(
    servable: Servable, request: inference_pb2.MultiInferenceRequest, options: PlanOptions
) -> RequestPlan[Message]:
    """Several classify/regress tasks on one input against one model (multi_inference.cc).

    As TF Serving: the serialized examples are fed to the set of the tasks' input
    tensors and the set of their output tensors is fetched, in one Session run, where
    the platform can (`combined_signature`, the tensorflow platform's Session); the
    tasks need not share an input tensor (a TF2 export gives each signature its own).
    Elsewhere each task's signature runs once on the same examples.
    """
    multi_inference_model_spec(request)
    model_name = ""
    seen: set[str] = set()
    tasks: list[tuple[str, str, str, tuple[str, ...]]] = []  # method, spec name, sig, outputs
    for task in request.tasks:
        spec = task.model_spec
        if not spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = spec.name
        elif spec.name != model_name:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {signature_name}")
        seen.add(signature_name)
        signature = servable.signatures.get(signature_name)
        if signature is None:
            raise invalid_argument(
                f"Requested signature not found in model graph: {signature_name}"
            )
        if task.method_name == cr.CLASSIFY_METHOD:
            wanted = cr.classification_outputs(signature, options.method_name_check)
        elif task.method_name == cr.REGRESS_METHOD:
            wanted = cr.regression_outputs(signature, options.method_name_check)
        else:
            raise ServingError(
                Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}"
            )
        tasks.append((task.method_name, spec.name, signature_name, wanted))

    examples = serialized_examples(request.input)
    n = len(examples)
    calls = tuple(_example_call(servable, sig, examples, wanted) for _, _, sig, wanted in tasks)
    combine = getattr(servable, "combined_signature", None)
    if combine is not None:  # one run; its outputs are keyed "signature/alias"
        combined = combine([(sig, wanted) for _, _, sig, wanted in tasks])
        names = tuple(f"{sig}/{alias}" for _, _, sig, wanted in tasks for alias in wanted)
        calls = (ModelCall(combined, {cr.INPUTS: examples}, names),)

    def split(results: Sequence[Outputs]) -> Sequence[Outputs]:
        if combine is None:
            return results
        return [
            {alias: results[0][f"{sig}/{alias}"] for alias in wanted} for _, _, sig, wanted in tasks
        ]

    def finish(results: Sequence[Outputs], served: ServableHandle) -> Message:
        response = inference_pb2.MultiInferenceResponse()
        for (method, name, signature_name, _), outputs in zip(tasks, split(results), strict=True):
            result = response.results.add()
            if method == cr.CLASSIFY_METHOD:
                found = cr.check_classifications(outputs, n)
                fill_classification_result(result.classification_result, found, n)
            else:
                values = cr.check_regressions(outputs, n)
                fill_regression_result(result.regression_result, values)
            fill_model_spec(result.model_spec, name, served.version, signature_name)
        return cast("Message", response)  # tensorflow_serving's modules are untyped (Any)

    return RequestPlan(calls, finish)


class TFServingExamplePlans:
    """The in-process data plane's `ExamplePlans` (engine/data_plane.py): the composition
    root hands it over, so that engine/ never imports TF Serving's messages."""

    classify = staticmethod(plan_classify)
    regress = staticmethod(plan_regress)
    multi_inference = staticmethod(plan_multi_inference)


EXAMPLE_PLANS = TFServingExamplePlans()
