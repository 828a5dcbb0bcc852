"""A compute-heavy stand-in for the example model, to show what batching is for.

The digits model's call is ~10 us: batching cannot win much there. This MLP takes the same
request (signature `predict_images`, input `images` [N,64], output `scores` [N,10],
softmax) but three 3072-wide layers (113 MiB of weights) make a one-image call cost
milliseconds, most of it reading the weights, which a batch reads once for all its rows.
The comparison is meant for a 2-5 ms one-image call (`ONE_IMAGE_MS`): 2048-wide layers
took 2 ms on the first machine this ran on and 1.2 ms on a faster one, where 3072 takes
2.8 ms, and 5.2 ms on a slower one (`python -m bench.h2load --heavy_width` picks another
width; a call costs about width squared).
`python -m bench.heavy_model OUT [WIDTH]` writes the SavedModel to OUT/folder(WIDTH)/1.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

WIDTH = 3072
LAYERS = 3
ONE_IMAGE_MS = (2.0, 5.0)  # the one-image call the comparison is meant for


def folder(width: int = WIDTH) -> str:
    """Named by the shape, so a changed shape is exported afresh, not reused."""
    return f"heavy_mlp_{LAYERS}x{width}"


def export(out: Path, width: int = WIDTH) -> Path:
    """Write version 1 under `out`/folder(width) (once) and return that model base path."""
    base = out / folder(width)
    if (base / "1" / "saved_model.pb").exists():
        return base
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(0)

    class Heavy(tf.Module):
        def __init__(self) -> None:
            sizes = [64] + [width] * LAYERS
            self.kernels = [
                tf.Variable(rng.normal((a, b)) / a**0.5) for a, b in itertools.pairwise(sizes)
            ]
            self.out = tf.Variable(rng.normal((width, 10)) / width**0.5)

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="images")])
        def predict_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            x = images
            for kernel in self.kernels:
                x = tf.nn.relu(tf.matmul(x, kernel))
            return {"scores": tf.nn.softmax(tf.matmul(x, self.out))}

    module = Heavy()
    tf.saved_model.save(
        module, str(base / "1"), signatures={"predict_images": module.predict_images}
    )
    return base


if __name__ == "__main__":
    print(export(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else WIDTH))
