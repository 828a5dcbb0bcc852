#!/usr/bin/env python3
"""Train a softmax-regression digit classifier and export it as a SavedModel.

TensorFlow 2 version of TF Serving's ``mnist_saved_model.py`` tutorial. The
model is written to ``<export_dir>/<model_version>`` with two signatures,
``predict_images`` and ``serving_default`` (the same function): input
``images`` float32 [N, pixels], output ``scores`` float32 [N, 10].

Usage::

    python examples/mnist_saved_model.py --training_iteration=2000 \\
        --model_version=1 /tmp/mnist

The export is assembled in a hidden temporary folder beside the target and
renamed into place only when complete, so a server watching ``export_dir``
never loads half a model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from types import ModuleType
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from mnist_input_data import Dataset, load_dataset

BATCH_SIZE = 50
NUM_CLASSES = 10
SEED = 0
# With the default sklearn digits this gives ~12% test error after 100
# iterations and ~5% after 2000, so a newer version visibly serves better.
DEFAULT_LEARNING_RATE = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line (exit code 2 on bad usage)."""
    parser = argparse.ArgumentParser(
        description=(
            "Train a softmax-regression digit classifier and export it as a "
            "SavedModel to EXPORT_DIR/MODEL_VERSION for pyserving / TF Serving."
        )
    )
    parser.add_argument(
        "--training_iteration",
        type=int,
        default=1000,
        help=f"number of mini-batch SGD steps (batch size {BATCH_SIZE}; default: %(default)s)",
    )
    parser.add_argument(
        "--model_version",
        type=int,
        default=1,
        help="version number of the model, i.e. the subfolder of EXPORT_DIR (>= 1; "
        "default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="folder holding real MNIST (mnist.npz or the four IDX files, optionally "
        ".gz); default: scikit-learn's bundled 8x8 digits (no download)",
    )
    parser.add_argument(
        "--learning_rate",
        type=float,
        default=DEFAULT_LEARNING_RATE,
        help="SGD learning rate on the mean cross-entropy (default: %(default)s, tuned "
        "for the bundled digits; 0.5 matches the TF1 tutorial's rate on real MNIST)",
    )
    parser.add_argument(
        "--warmup_requests",
        type=int,
        default=0,
        help="write this many held-out images as warm-up requests (TF Serving's "
        "assets.extra/tf_serving_warmup_requests, one Predict per record) into the export, "
        "so the server runs them before serving the version (default: 0 = none)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace EXPORT_DIR/MODEL_VERSION if it already exists (default: refuse)",
    )
    parser.add_argument(
        "export_dir",
        help="base export folder; the model goes to EXPORT_DIR/MODEL_VERSION",
    )
    args = parser.parse_args(argv)
    if args.model_version < 1:
        parser.error("--model_version must be >= 1")
    if args.training_iteration < 1:
        parser.error("--training_iteration must be >= 1")
    if not args.learning_rate > 0:
        parser.error("--learning_rate must be > 0")
    if not 0 <= args.warmup_requests <= 1000:
        parser.error("--warmup_requests must be between 0 and 1000 (TF Serving's maximum)")
    return args


def train(tf: ModuleType, data: Dataset, iterations: int, learning_rate: float) -> tuple[Any, Any]:
    """Fit W, b by mini-batch SGD; returns the two tf.Variables."""
    tf.random.set_seed(SEED)
    weights = tf.Variable(tf.zeros([data.pixels, NUM_CLASSES]), name="W")
    bias = tf.Variable(tf.zeros([NUM_CLASSES]), name="b")
    lr = tf.constant(learning_rate, tf.float32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, data.pixels], tf.float32),
            tf.TensorSpec([None], tf.int64),
        ]
    )
    def train_step(images: Any, labels: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = tf.matmul(images, weights) + bias
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        grad_w, grad_b = tape.gradient(loss, [weights, bias])
        weights.assign_sub(lr * grad_w)
        bias.assign_sub(lr * grad_b)
        return loss

    rng = np.random.default_rng(SEED)
    n = data.train_images.shape[0]
    order = rng.permutation(n)
    pos = 0
    report_every = max(1, iterations // 10)
    for step in range(1, iterations + 1):
        # Walk through shuffled epochs like the TF1 tutorial's next_batch().
        if pos + BATCH_SIZE > n:
            order = rng.permutation(n)
            pos = 0
        idx = order[pos : pos + BATCH_SIZE]
        pos += BATCH_SIZE
        loss = train_step(data.train_images[idx], data.train_labels[idx])
        if step % report_every == 0 or step == iterations:
            print(
                f"iteration {step:6d}/{iterations}  batch loss {float(loss):.4f}", file=sys.stderr
            )
    return weights, bias


def build_module(tf: ModuleType, weights: Any, bias: Any, pixels: int) -> Any:
    """Wrap the trained variables in a tf.Module with the serving function."""
    module = tf.Module()
    module.W = weights
    module.b = bias

    @tf.function(input_signature=[tf.TensorSpec([None, pixels], tf.float32, name="images")])
    def predict_images(images: Any) -> dict[str, Any]:
        return {"scores": tf.nn.softmax(tf.matmul(images, module.W) + module.b)}

    module.predict_images = predict_images
    return module


def write_warmup_requests(tf: ModuleType, folder: str, images: np.ndarray) -> str:
    """One PredictionLog per image, in the TFRecord file TF Serving replays at load."""
    from tensorflow_serving.apis import prediction_log_pb2

    extra = os.path.join(folder, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(path) as writer:
        for image in images:
            record = prediction_log_pb2.PredictionLog()
            request = record.predict_log.request
            request.model_spec.name = "mnist"
            request.model_spec.signature_name = "predict_images"
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(image[np.newaxis]))
            writer.write(record.SerializeToString())
    return path


def export(
    tf: ModuleType,
    module: Any,
    export_dir: str,
    version: int,
    overwrite: bool,
    warmup_images: np.ndarray | None = None,
) -> str:
    """Save to a temp folder beside the target, then rename it into place."""
    target = os.path.join(export_dir, str(version))
    os.makedirs(export_dir, exist_ok=True)
    tmp = os.path.join(export_dir, f".tmp-{version}-{os.getpid()}")
    old = os.path.join(export_dir, f".old-{version}-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    try:
        concrete = module.predict_images.get_concrete_function()
        tf.saved_model.save(
            module,
            tmp,
            signatures={"predict_images": concrete, "serving_default": concrete},
        )
        if warmup_images is not None and len(warmup_images):
            write_warmup_requests(tf, tmp, warmup_images)
        if os.path.exists(target):
            if not overwrite:
                raise FileExistsError(target)
            # A directory can't be renamed over a non-empty one: move the old
            # version aside first, then drop it once the new one is in place.
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate on the held-out split and export; returns the exit code."""
    args = parse_args(argv)
    target = os.path.join(args.export_dir, str(args.model_version))
    if os.path.exists(target) and not args.overwrite:
        print(
            f"error: {target} already exists; choose another --model_version or pass --overwrite",
            file=sys.stderr,
        )
        return 2
    try:
        data = load_dataset(args.data)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"Training on {data.train_images.shape[0]} images of {data.pixels} pixels "
        f"({data.test_images.shape[0]} held out for testing)",
        file=sys.stderr,
    )

    from pyserving.adapters.tensorflow_import import import_tensorflow

    import_tensorflow()  # without its C++ start-up lines; TF_CPP_MIN_LOG_LEVEL=0 shows them
    import tensorflow as tf

    start = time.perf_counter()
    weights, bias = train(tf, data, args.training_iteration, args.learning_rate)
    elapsed = time.perf_counter() - start
    print(f"Trained {args.training_iteration} iterations in {elapsed:.1f}s", file=sys.stderr)

    module = build_module(tf, weights, bias, data.pixels)
    scores = module.predict_images(tf.constant(data.test_images))["scores"].numpy()
    error = float(np.mean(np.argmax(scores, axis=1) != data.test_labels))
    print(f"Test error: {100 * error:.1f}%")

    try:
        path = export(
            tf,
            module,
            args.export_dir,
            args.model_version,
            args.overwrite,
            warmup_images=data.test_images[: args.warmup_requests].astype(np.float32),
        )
    except FileExistsError:
        print(
            f"error: {target} appeared while training; choose another --model_version "
            "or pass --overwrite",
            file=sys.stderr,
        )
        return 2
    print(f"Exported model to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
