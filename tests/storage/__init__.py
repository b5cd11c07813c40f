"""Tests of the log engine (brook.storage): unit, model-based, recovery and crash tests."""
