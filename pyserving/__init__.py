"""pyserving: TF Serving's API in Python, with every servable version an explicit state machine."""

__version__ = "0.1.0"
