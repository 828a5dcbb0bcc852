"""pyserving: TF Serving's API in Python, with every servable version an explicit state machine."""

import os

# TensorFlow reads this once, when it is first imported. With oneDNN's custom ops on (the
# x86 default of TensorFlow's pip wheels) tensors come from oneDNN's caching allocator,
# which keeps an unloaded version's variables for reuse instead of returning them: RSS
# never falls after an unload. TF Serving's standard build has no oneDNN either. Set
# TF_ENABLE_ONEDNN_OPTS=1 to trade that for oneDNN's kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
