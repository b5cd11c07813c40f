"""The storage node: partition replicas, Storage and Replica services, replication."""
