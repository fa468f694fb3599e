"""Metrics (through the local `evaluate` module), the final evaluation of a run, and `hf-ser evaluate`."""
