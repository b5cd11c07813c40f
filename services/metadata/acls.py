"""ACLs in etcd (issue 11): the store the coordinator writes, the cache every process
reads.

One key per ACL binding, spelling the whole binding (`Keys.acl`):

    /brook/<cluster>/acls/<type>/<pattern>/<name>/<principal>/<operation>/<permission>

with the binding as JSON (and `created_ms`) for its value, so creating an ACL twice is
one key written twice, and deleting one deletes its key. Writes are fenced on the
coordinator role when the writer holds it (as topic writes are): a paused coordinator
that lost its role cannot change ACLs.

`AclCache` keeps every process's copy (a `PrefixCache`: one snapshot at a revision, then
a watch from the next; reloads when the watch breaks, deciding with the last snapshot
meanwhile). Its `version` moves on every applied change, which is what the `Authorizer`
watches to drop its cached decisions. No etcd call is ever made on a request path.

Bounds: at most ACLS_MAX bindings in a cluster (every process keeps them all in memory,
and the snapshot is one etcd range response), ACLS_PER_REQUEST_MAX per create.

Thread-safety: one event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import aetcd.rpc

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason
from brook.services.common.authz.audit import configure_audit_log
from brook.services.common.authz.enforce import Authorizer, install
from brook.services.common.authz.model import AclBinding
from brook.services.metadata.prefix_cache import PrefixCache, read_prefix
from brook.services.metadata.store import MetadataStore
from brook.services.metadata.txn import chunk_ops, ops_of, sized_op

log = logging.getLogger("brook.metadata.acls")

# ACL bindings a cluster may hold (why: each process keeps all in memory, and the cache's
# snapshot is one range response, ~350 bytes per binding, under gRPC's 4 MiB).
ACLS_MAX = 5_000
# Bindings one CreateAcls may carry, and filters one DeleteAcls.
ACLS_PER_REQUEST_MAX = 1_000
ACL_FILTERS_PER_REQUEST_MAX = 100


def binding_to_json(binding: AclBinding, created_ms: int = 0) -> bytes:
    return json.dumps(
        {
            "principal": binding.principal,
            "resource_type": binding.resource_type.value,
            "resource_name": binding.resource_name,
            "pattern_type": binding.pattern_type.value,
            "operation": binding.operation.value,
            "permission": binding.permission.value,
            "created_ms": created_ms,
        },
        sort_keys=True,
    ).encode()


def binding_from_json(data: bytes) -> AclBinding:
    """The stored binding, checked again (ValueError/BrookError when unreadable)."""
    values = json.loads(data)
    return AclBinding.create(
        values["principal"], values["resource_type"], values["resource_name"],
        values["operation"], values["permission"], values["pattern_type"],
    )  # fmt: skip


class AclStore:
    """The coordinator's ACL writes and fresh reads."""

    def __init__(self, store: MetadataStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.keys = store.keys
        self._clock = clock

    def key(self, binding: AclBinding) -> bytes:
        return self.keys.acl(
            binding.resource_type.value, binding.pattern_type.value, binding.resource_name,
            binding.principal, binding.operation.value, binding.permission.value,
        )  # fmt: skip

    async def read_all(self) -> tuple[int, list[tuple[bytes, AclBinding]]]:
        """(revision, every readable (key, binding)) at one etcd revision."""
        return await read_prefix(self.store, self.keys.acls_prefix, binding_from_json, "ACL")

    async def create(self, bindings: Sequence[AclBinding], present: int) -> int:
        """Writes `bindings` (idempotent per binding); `present` is how many the cluster
        holds now, for the ACLS_MAX bound. Answers the etcd revision of the last write."""
        if present + len(bindings) > ACLS_MAX:
            raise BrookError(
                Reason.INVALID_REQUEST,
                f"a cluster holds at most {ACLS_MAX} ACLs ({present} now); use prefixed or"
                " wildcard ACLs, or delete unused ones",
                {"limit": ACLS_MAX},
            )
        now_ms = self._clock.now_ms()
        sized = []
        for binding in bindings:
            key, value = self.key(binding), binding_to_json(binding, now_ms)
            put = aetcd.rpc.RequestOp(request_put=aetcd.rpc.PutRequest(key=key, value=value))
            sized.append(sized_op(put, key, value))
        revision = 0
        for chunk in ops_of(chunk_ops(sized)):
            # Fenced on the coordinator role (the store's write path; same package).
            response = await self.store._write_txn([], chunk)
            revision = int(response.header.revision)
        return revision

    async def delete(self, keys: Iterable[bytes]) -> tuple[list[AclBinding], int]:
        """Deletes the keys; answers the bindings that were there (and are gone now), and
        the etcd revision of the last write."""
        sized = []
        for key in keys:
            op = aetcd.rpc.RequestOp(
                request_delete_range=aetcd.rpc.DeleteRangeRequest(key=key, prev_kv=True)
            )
            sized.append(sized_op(op, key))
        deleted: list[AclBinding] = []
        revision = 0
        for chunk in ops_of(chunk_ops(sized)):
            response = await self.store._write_txn([], chunk)
            revision = int(response.header.revision)
            for item in response.responses:
                for kv in item.response_delete_range.prev_kvs:
                    with contextlib.suppress(ValueError, KeyError, TypeError, BrookError):
                        deleted.append(binding_from_json(bytes(kv.value)))
        return deleted, revision


class AclCache(PrefixCache[AclBinding]):
    """Every ACL of the cluster, fed by an etcd watch (`PrefixCache`; the module doc)."""

    def __init__(self, store: MetadataStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(store, store.keys.acls_prefix, binding_from_json, "ACL", clock=clock)
        self.acl_store = AclStore(store, clock=clock)

    def bindings(self) -> Iterable[AclBinding]:
        return list(self.values.values())

    def items(self) -> list[tuple[bytes, AclBinding]]:
        """(key, binding) by key: the order DescribeAcls pages in."""
        return sorted(self.values.items())


class AccessControl:
    """A process's authorizer and, with `--authorizer acl`, the ACL cache behind it.

        access = AccessControl.from_args(args, store)   # flags: authz/flags.py
        await access.start()                             # before serving
        SomeServicer(..., authz=access.authorizer)
        await access.stop()
    """

    def __init__(
        self, store: MetadataStore, *, authorizer: str = "none",
        super_users: Iterable[str] = (), audit_log: str = "", cache_always: bool = False,
    ) -> None:  # fmt: skip
        configure_audit_log(audit_log)
        # The coordinator keeps the cache for the ACL admin calls whatever the authorizer.
        enabled = authorizer == "acl"
        self.cache: AclCache | None = AclCache(store) if enabled or cache_always else None
        self.authorizer = Authorizer(self.cache if enabled else None, super_users=super_users)
        install(self.authorizer)  # for `check_call` (the record API)

    @classmethod
    def from_args(
        cls, args: Any, store: MetadataStore, *, cache_always: bool = False
    ) -> AccessControl:
        return cls(
            store,
            authorizer=getattr(args, "authorizer", "none"),
            super_users=getattr(args, "super_users", frozenset()),
            audit_log=getattr(args, "audit_log", ""),
            cache_always=cache_always,
        )

    async def start(self) -> None:
        if self.cache is not None:
            await self.cache.start()
        if self.authorizer.enabled:
            log.info("authorizer acl: %d ACLs, super users %s", len(self.cache or ()),
                     sorted(self.authorizer.super_users) or "none")  # fmt: skip

    async def stop(self) -> None:
        if self.cache is not None:
            await self.cache.stop()
