"""Importing TensorFlow without its C++ start-up lines on a newcomer's terminal.

`import tensorflow` prints, before absl's logging is initialised and whatever
TF_CPP_MIN_LOG_LEVEL says: absl's "All log messages before absl::InitializeLog() is called
are written to STDERR", oneDNN's note, cudart's "Could not find cuda drivers" and
cpu_feature_guard's list of instructions; the first device use then logs
"E0000 ... failed call to cuInit" on a machine without a GPU. None is about the server,
and a newcomer reads the E line as a real error. So, unless the user asked for them:

- TF_CPP_MIN_LOG_LEVEL=3 (TensorFlow's C++ log: FATAL only) is set before the import,
  which silences cuInit and later per-request lines (e.g. local_rendezvous' "aborting",
  whose error the request's own status already carries);
- the import's own lines, which ignore that variable, are captured from file descriptor 2
  and dropped; if the import fails they are written out with the error.

They are all shown at `--log_level=debug` (the verbose level) or when the user sets
TF_CPP_MIN_LOG_LEVEL=0; any level the user set is kept (1 or more also drops the import's
INFO lines, as that level asks).
"""

from __future__ import annotations

import os
import sys
import tempfile

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow once, quietly unless `verbose` or TF_CPP_MIN_LOG_LEVEL=0.
    Call it from the main thread before any other thread writes to stderr."""
    if "tensorflow" in sys.modules:
        return
    if verbose or os.environ.get(LEVEL_VARIABLE, QUIET_LEVEL).strip() == "0":
        import tensorflow

        return
    os.environ.setdefault(LEVEL_VARIABLE, QUIET_LEVEL)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
