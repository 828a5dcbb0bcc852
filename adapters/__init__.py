"""The edges: sources that find versions, loaders that load them, logs and metrics."""
