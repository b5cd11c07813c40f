"""Brook: a distributed commit log with gRPC APIs and etcd-backed metadata."""

__version__ = "0.1.0"
