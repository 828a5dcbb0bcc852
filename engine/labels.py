"""Version labels: where each label points now, so that moving one never opens a gap.

The config says where a label *should* point; `effective_labels` decides where it
*does* point, for the clients that name it:

- a label moves to its configured version only once that version is available;
  until then it keeps answering with the version it pointed at, as long as that serves;
- a label whose configured version is not available and that had no serving version
  before is recorded anyway (requests naming it get NOT_FOUND, not INVALID_ARGUMENT)
  and starts resolving the moment the version becomes available;
- with `allow_unavailable` (TF Serving's --allow_version_labels_for_unavailable_models)
  a label moves at once, as TF Serving does.

The serving map's one writer (engine/map_writer.py) applies it whenever a model's
configured labels or its available versions change.
"""

from __future__ import annotations

from collections.abc import Mapping


def effective_labels(
    desired: Mapping[str, int],
    current: Mapping[str, int],
    available: set[int],
    allow_unavailable: bool = False,
) -> dict[str, int]:
    """Where each configured label points now, given where it pointed and what serves."""
    effective: dict[str, int] = {}
    for label, wanted in desired.items():
        now = current.get(label)
        keep_serving_version = (
            not allow_unavailable
            and wanted not in available
            and now is not None
            and now in available
        )
        effective[label] = now if keep_serving_version and now is not None else wanted
    return effective
