"""The audit log (issue 11): one JSON object per line on the logger `brook.audit`.

Written for every refused call (result "denied") and every mutating admin operation that
was allowed (result "allowed": CreateTopic, DeleteTopic, AlterConfigs, CreatePartitions,
ReassignPartitions, ElectLeaders, CreateAcls, DeleteAcls, DeleteGroup, ResetOffsets),
whether an authorizer is on or not. Fields:

    ts_ms          when, in ms since the Unix epoch
    principal      who (`user:alice`, `node:3`, `anonymous`)
    operation      what (`delete`, ...)
    resource_type  `cluster`, `topic` or `group`
    resource       the resource's name
    result         `allowed` or `denied`
    basis          why: super_user, acl_allow, acl_deny, no_acl, node, authorizer_off,
                   not_the_node / not_a_replica (replication identity)
    rule           the ACL that decided it, if one did
    method         the full gRPC method name
    peer           the caller's address as gRPC reports it

By default the lines go where the process logs (prefixed by the usual log format);
`--audit-log FILE` (every process) writes them, bare, one JSON object per line, to FILE
instead.

Thread-safety: logging is thread-safe; the handler is set up once at start.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

AUDIT_LOGGER = "brook.audit"

log = logging.getLogger(AUDIT_LOGGER)


def configure_audit_log(path: str | Path | None) -> None:
    """Sends audit lines, bare, to `path` (appending) instead of the process log."""
    if not path:
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def audit(
    *,
    principal: str,
    operation: str,
    resource_type: str,
    resource: str,
    allowed: bool,
    basis: str,
    method: str,
    peer: str,
    rule: str = "",
) -> None:
    """Writes one audit line."""
    entry = {
        "ts_ms": int(time.time() * 1000),
        "principal": principal,
        "operation": operation,
        "resource_type": resource_type,
        "resource": resource,
        "result": "allowed" if allowed else "denied",
        "basis": basis,
        "method": method,
        "peer": peer,
    }
    if rule:
        entry["rule"] = rule
    log.info(json.dumps(entry, sort_keys=True))
