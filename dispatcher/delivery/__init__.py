"""Sending: the pipeline (claim, send, record), retry policy, the plan at an instant, wiring, the service, leader election, metrics."""
