"""One explicit finite-state machine per servable version."""
