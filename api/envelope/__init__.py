"""What every protocol uses: the request envelope (request id, metrics, drain, deadline,
status mapping), tensor budgets, HTTP bodies and the HTTP server, health, answer provenance,
the restricted (admin) API switch, and the request log's PredictionLog records.

Nothing here imports a protocol package (api/tfserving, api/oip).
"""
