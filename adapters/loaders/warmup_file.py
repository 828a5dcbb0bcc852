"""TF Serving's warm-up file: where a version keeps it and how many records it may hold.

Without TensorFlow, so the `warmup-from-logs` command's parser (and its --help) can name
the limit without the seconds-long import that reading the file needs (warmup.py).
"""

from __future__ import annotations

import os

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # saved_model_warmup_util.cc's kMaxNumRecords


def warmup_path(version_path: str) -> str:
    return os.path.join(version_path, WARMUP_DIR, WARMUP_FILE)
