"""Which model bytes a version folder holds: the fingerprint every answer carries.

A folder `2/` can be replaced, so a version number alone cannot say which model answered.
Two forms, one per kind of evidence, each saying which it is:

- `saved_model:<graph_def_program_hash>/<signature_def_hash>/<saved_object_graph_hash>/
  <checkpoint_hash>`: a TF2 SavedModel's `fingerprint.pb`, written by TensorFlow at export,
  as TensorFlow's own `Fingerprint.singleprint()` spells it (the graph, the signatures,
  the object graph and the variables: `saved_model_checksum` alone would not change when
  only the variables do).
- `sha256:<64 hex digits>`: pyserving's digest where there is no `fingerprint.pb` (TF1
  exports, `model.tflite`, the python platform): sha256 over the files that make the
  model, in sorted relative-path order, each as its path, its size and its bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from pyserving.adapters.sources.storage_path import SAVED_MODEL_FILES

FINGERPRINT_FILE = "fingerprint.pb"
SAVED_MODEL_PREFIX = "saved_model:"
DIGEST_PREFIX = "sha256:"
# What a SavedModel's digest covers: the graph, the variables, the assets (a vocabulary is
# model bytes too); not assets.extra, which holds warm-up records, not the model.
SAVED_MODEL_PARTS = ("variables", "assets")
_CHUNK = 1 << 20


def saved_model_fingerprint(path: str) -> str:
    """The SavedModel's own fingerprint when it has `fingerprint.pb`, else its digest."""
    folder = Path(path)
    if (folder / FINGERPRINT_FILE).is_file():
        return read_fingerprint_pb(folder / FINGERPRINT_FILE)
    graphs = [folder / name for name in SAVED_MODEL_FILES if (folder / name).is_file()]
    parts = [p for name in SAVED_MODEL_PARTS for p in _files_under(folder / name)]
    return file_digest(folder, [*graphs, *parts])


def read_fingerprint_pb(file: Path) -> str:
    """`saved_model:` and the FingerprintDef's four hashes, as `singleprint()` joins them."""
    from tensorflow.core.protobuf import fingerprint_pb2

    found = fingerprint_pb2.FingerprintDef.FromString(file.read_bytes())
    hashes = (
        found.graph_def_program_hash,
        found.signature_def_hash,
        found.saved_object_graph_hash,
        found.checkpoint_hash,
    )
    return SAVED_MODEL_PREFIX + "/".join(str(h) for h in hashes)


def folder_digest(path: str) -> str:
    """Every file in the folder (a python model: its code and whatever state it reads)."""
    folder = Path(path)
    return file_digest(folder, _files_under(folder))


def file_digest(root: Path, files: Iterable[Path]) -> str:
    """`sha256:` over the files in sorted relative-path order; path and size delimit each."""
    digest = hashlib.sha256()
    for relative, file in sorted((f.relative_to(root).as_posix(), f) for f in files):
        digest.update(f"{relative}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return DIGEST_PREFIX + digest.hexdigest()


def _files_under(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [f for f in folder.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
