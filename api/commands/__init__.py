"""Offline commands that run without a server: `pyserving replay` (checks an event log and
reports its timelines) and `pyserving warmup-from-logs` (turns a request log into a
SavedModel's warm-up file).
"""
