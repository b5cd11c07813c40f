"""Shared test helpers: a real etcd, a local Brook cluster of real processes, free ports."""
