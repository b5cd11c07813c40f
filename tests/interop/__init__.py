"""Interop tests: clients in other languages, built from protos/ alone."""
