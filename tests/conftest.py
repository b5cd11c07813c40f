"""Shared fixtures, defined in tests/harness: a real etcd and local clusters of real processes."""

from tests.harness.clients import admins
from tests.harness.cluster import local_cluster
from tests.harness.etcd import cluster_name, etcd, etcd_server
from tests.harness.secure import security_mode

__all__ = ["admins", "cluster_name", "etcd", "etcd_server", "local_cluster", "security_mode"]
