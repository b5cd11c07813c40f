"""The group manager: consumer-group membership, server-side assignment, committed offsets.

Pure core: `assignors` (who gets which partition) and `state` (the membership state
machine, time injected). Shell: `group_store` in `brook.services.metadata` (etcd),
`service` (the GroupService servicer) and `main` (the process).
"""
