"""Request logging: sampled requests of configured models, as TF Serving's PredictionLog
records in TFRecord files (`logger` decides and builds, `writer` owns the files)."""
