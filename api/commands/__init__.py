"""Offline commands that run without a server: `pyserving replay` (checks an event log and
reports its timelines), `pyserving warmup-from-logs` (turns a request log into a
SavedModel's warm-up file) and `pyserving compare` (the promotion gates on two version
folders); and the recorded requests both the server's gates and `compare` read
(`promotion_requests.py`).
"""
