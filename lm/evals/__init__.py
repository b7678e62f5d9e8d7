"""Evaluations: what a model scores (bits per byte, GSM8K, arithmetic, CORE, chat suites, honesty)."""
