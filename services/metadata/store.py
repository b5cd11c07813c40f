"""MetadataStore: Brook's reads and writes of etcd, and the Lease every role holder keeps.

Every decision is a compare-and-swap: a writer reads a record with its etcd mod revision,
decides, and writes the new record only if the mod revision is unchanged (`cas_partition`,
`put_topic`). A `None`/`False` answer means someone else wrote first: re-read, re-decide.

Failures talking to etcd are retried a bounded number of times (tenacity) and then raised
as `BrookError("COORDINATOR_NOT_AVAILABLE")` (retriable), so a servicer answers UNAVAILABLE
instead of hanging. A retried write may have been applied the first time (the answer was
lost); every write here is either idempotent or a CAS whose loss the caller handles.

Large topics are written in chunks (`txn.chunk_ops`: etcd caps a transaction at 128
operations and a request at 1.5 MiB by default): partition keys first, each chunk guarded
on the topic key still being absent, and the topic key last. Readers list a topic only
once its topic key exists, so a half-created topic is invisible; a crash half-way leaves
stray partition keys that the next create of that name deletes in its first chunk.

Thread-safety: one store per process, used from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.rpc
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError
from brook.services.common.metrics import observe_etcd
from brook.services.common.tls import PLAINTEXT_ETCD, EtcdSecurity
from brook.services.metadata.cas import compare_and_swap
from brook.services.metadata.etcd_client import make_client
from brook.services.metadata.keys import Keys, prefix_range_end
from brook.services.metadata.model import (
    Endpoint,
    NodeInfo,
    NodeStateRecord,
    PartitionRecord,
    TopicRecord,
)
from brook.services.metadata.txn import chunk_ops, ops_of, sized_op

log = logging.getLogger("brook.metadata")

T = TypeVar("T")

# Attempts per etcd call before giving up with COORDINATOR_NOT_AVAILABLE.
CALL_ATTEMPTS_MAX = 3
# Total time `connect` keeps trying before it reports etcd unreachable.
CONNECT_TIMEOUT_S = 15.0
# How long a campaigner waits on one watch for the holder's key to go before re-checking
# (a missed delete event then costs at most this much).
CAMPAIGN_POLL_S = 1.0
# CAS attempts of delete_topic before reporting contention.
DELETE_ATTEMPTS_MAX = 10

_TRANSIENT = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    aetcd.exceptions.InternalError,
    asyncio.TimeoutError,
)


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' -> (host, port); a bare host gets etcd's default port 2379."""
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, 2379
    return host.strip("[]") or "127.0.0.1", int(port)


def _unavailable(what: str, error: BaseException) -> BrookError:
    return BrookError(
        "COORDINATOR_NOT_AVAILABLE",
        f"etcd unavailable during {what}: {type(error).__name__}: {error}",
    )


# -- transaction building (aetcd's own `transaction()` drops the response header, and
#    callers need the revision a write produced) ----------------------------------------
def _cmp_mod(key: bytes, revision: int) -> Any:
    return aetcd.rpc.Compare(
        key=key,
        result=aetcd.rpc.Compare.EQUAL,
        target=aetcd.rpc.Compare.MOD,
        mod_revision=revision,
    )


def _cmp_create(key: bytes, revision: int) -> Any:
    return aetcd.rpc.Compare(
        key=key,
        result=aetcd.rpc.Compare.EQUAL,
        target=aetcd.rpc.Compare.CREATE,
        create_revision=revision,
    )


def _op_put(key: bytes, value: bytes, lease_id: int = 0) -> Any:
    return aetcd.rpc.RequestOp(
        request_put=aetcd.rpc.PutRequest(key=key, value=value, lease=lease_id)
    )


def _op_delete(key: bytes, range_end: bytes | None = None) -> Any:
    request = aetcd.rpc.DeleteRangeRequest(key=key)
    if range_end is not None:
        request.range_end = range_end
    return aetcd.rpc.RequestOp(request_delete_range=request)


def _op_range(key: bytes, range_end: bytes | None = None) -> Any:
    request = aetcd.rpc.RangeRequest(key=key)
    if range_end is not None:
        request.range_end = range_end
    return aetcd.rpc.RequestOp(request_range=request)


def _topic_write_chunks(
    topic: TopicRecord, partitions: Sequence[PartitionRecord], keys: Keys
) -> list[list[Any]]:
    """The puts of `partitions`, then of `topic` (what makes the write visible, so in the
    final transaction), chunked to etcd's transaction limits."""
    sized = []
    for p in partitions:
        key, value = keys.partition(p.topic, p.partition), p.to_json()
        sized.append(sized_op(_op_put(key, value), key, value))
    topic_key, topic_value = keys.topic(topic.name), topic.to_json()
    sized.append(sized_op(_op_put(topic_key, topic_value), topic_key, topic_value))
    return ops_of(chunk_ops(sized))


class Lease:
    """An etcd lease kept alive by a background task that this object owns.

    The task refreshes every ttl/3. `lost` is set when no refresh has succeeded for
    ttl minus a safety margin: measured from when the last successful refresh was *sent*,
    so the server's expiry (which counts from when it *received* it) is never earlier than
    our deadline. The holder stops acting when `lost` is set, before anyone else can
    acquire what the lease guarded. A lost lease is not refreshed again: it is given up
    (revoked best-effort so its keys go at once) and the holder takes a new one.
    """

    def __init__(
        self,
        client: aetcd.Client,
        lease_id: int,
        ttl_s: int,
        *,
        granted_at: float,
        margin_s: float | None = None,
        clock: Callable[[], float] = SYSTEM_CLOCK.monotonic_s,
        request_timeout_s: float = 5.0,
    ) -> None:
        self.lease_id = lease_id
        self.ttl_s = ttl_s
        self.lost = asyncio.Event()
        self._client = client
        self._clock = clock
        # A quarter of the TTL, at least half a second: two missed refreshes (every ttl/3)
        # are tolerated, a third is not.
        self._margin_s = margin_s if margin_s is not None else max(0.5, ttl_s / 4)
        self._interval_s = ttl_s / 3
        self._request_timeout_s = request_timeout_s
        self._valid_until = granted_at + ttl_s  # by the server's clock rate, from send time
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        """Starts the keep-alive task (the store does this when it grants the lease)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._keep_alive(), name=f"lease-keepalive-{self.lease_id:x}"
            )

    def time_left_s(self) -> float:
        """How much longer the lease is surely valid, by the local clock (0 once lost)."""
        if self.lost.is_set():
            return 0.0
        return max(0.0, self._valid_until - self._margin_s - self._clock())

    def _mark_lost(self, why: str) -> None:
        if not self.lost.is_set() and not self._closed:
            log.warning("lease %x lost: %s", self.lease_id, why)
            self.lost.set()

    async def _keep_alive(self) -> None:
        try:
            while not self._closed:
                left = self.time_left_s()
                if left <= 0:
                    self._mark_lost(
                        f"no successful keep-alive for {self.ttl_s - self._margin_s:.1f}s"
                    )
                    break
                sent_at = self._clock()
                try:
                    reply = await asyncio.wait_for(
                        self._client.refresh_lease(self.lease_id),
                        timeout=min(left, self._request_timeout_s),
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # etcd unreachable: retry until the deadline
                    log.info("lease %x keep-alive failed: %r", self.lease_id, error)
                    await asyncio.sleep(min(0.25, self.time_left_s()))
                    continue
                if reply is None or reply.TTL <= 0:
                    self._mark_lost("etcd says the lease has expired")
                    break
                self._valid_until = sent_at + reply.TTL
                next_at = sent_at + self._interval_s
                await asyncio.sleep(max(0.0, min(next_at - self._clock(), self.time_left_s())))
        except asyncio.CancelledError:
            raise
        if self.lost.is_set():
            # Best effort: the keys go at once instead of at the server's expiry.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.revoke_lease(self.lease_id), timeout=1.0)

    async def close(self) -> None:
        """Stops the keep-alive task without revoking (the lease then expires on its own)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def revoke(self) -> None:
        """Clean release on shutdown: stop refreshing, delete the lease and its keys."""
        await self.close()
        try:
            await asyncio.wait_for(
                self._client.revoke_lease(self.lease_id), timeout=self._request_timeout_s
            )
        except Exception as error:  # the lease then expires after its TTL anyway
            log.warning("could not revoke lease %x: %s", self.lease_id, error)


class MetadataStore:
    """Brook's etcd access: one per process, async, aetcd underneath."""

    def __init__(
        self,
        etcd_address: str = "127.0.0.1:2379",
        *,
        cluster_name: str = "brook",
        request_timeout_s: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        security: EtcdSecurity | None = None,
    ) -> None:
        self.etcd_address = etcd_address
        # TLS and etcd auth (services/common/tls.py EtcdSecurity; etcd_client.py).
        self.security = security or PLAINTEXT_ETCD
        self.clock = clock
        self.keys = Keys(cluster_name)
        self.cluster_name = cluster_name
        self.request_timeout_s = request_timeout_s
        host, port = parse_address(etcd_address)
        self.client = make_client(
            host,
            port,
            security=self.security,
            timeout=request_timeout_s,
            options={
                # Notice a dead etcd connection without waiting for TCP timeouts.
                "grpc.keepalive_time_ms": 10_000,
                "grpc.keepalive_timeout_ms": 5_000,
                "grpc.keepalive_permit_without_calls": 1,
                # ...also under an idle watch: by default gRPC stops pinging after two
                # pings without data, so a hung or unreachable etcd (no RST) left the ACL,
                # quota and metadata watches waiting forever on a dead stream, never
                # reloading (tests/security/test_etcd_pause.py).
                "grpc.http2.max_pings_without_data": 0,
                "grpc.http2.ping_timeout_ms": 5_000,
            },
        )
        self._leases: set[Lease] = set()
        # (role key, its create revision) while this process acts as a role holder: topic
        # and partition writes are then conditional on still holding the role (fencing a
        # holder that was paused past its lease).
        self._fence: tuple[str, bytes, int] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connects and checks etcd answers; retries (bounded) before giving up."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(timeout_s),
                wait=wait_exponential(multiplier=0.1, max=2.0),
                retry=retry_if_exception_type(_TRANSIENT),
                reraise=True,
            ):
                with attempt:
                    await self.client.connect()
                    await asyncio.wait_for(
                        self.client.get(self.keys.cluster_id), self.request_timeout_s
                    )
        except _TRANSIENT as error:
            raise _unavailable(f"connect to {self.etcd_address}", error) from error

    async def close(self) -> None:
        """Stops lease keep-alives (without revoking) and closes the connection."""
        for lease in list(self._leases):
            await lease.close()
        self._leases.clear()
        with contextlib.suppress(Exception):
            await self.client.close()

    # -- plumbing ----------------------------------------------------------------------
    async def _call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Runs one etcd operation with bounded retries on transport failures (timed and
        counted: brook_etcd_request_duration_seconds / _errors_total by `what`)."""
        started = time.perf_counter()
        failed = True
        try:
            result = await self._call_with_retries(what, operation)
            failed = False
            return result
        except asyncio.CancelledError:
            failed = False  # the caller gave up (shutdown): not an etcd failure
            raise
        finally:
            observe_etcd(what, time.perf_counter() - started, failed)

    async def _call_with_retries(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(CALL_ATTEMPTS_MAX)
                | stop_after_delay(self.request_timeout_s * 2),
                wait=wait_exponential(multiplier=0.05, max=1.0),
                retry=retry_if_exception_type(_TRANSIENT),
                reraise=True,
            ):
                with attempt:
                    return await asyncio.wait_for(operation(), self.request_timeout_s)
        except _TRANSIENT as error:
            raise _unavailable(what, error) from error
        except RetryError as error:  # pragma: no cover - reraise=True makes this unreachable
            raise _unavailable(what, error) from error
        raise AssertionError("unreachable")  # pragma: no cover

    async def txn(
        self, compare: Sequence[Any], success: Sequence[Any], failure: Sequence[Any] = ()
    ) -> Any:
        """One raw etcd transaction (rpc messages), returning the full TxnResponse.

        For the group store (same process): build ops with this module's `_op_*` helpers or
        aetcd.rpc directly. Retries are bounded as for every call.
        """
        request = aetcd.rpc.TxnRequest(
            compare=list(compare), success=list(success), failure=list(failure)
        )

        async def run() -> Any:
            await self.client.connect()
            assert self.client.kvstub is not None
            try:
                # metadata: etcd auth's token (None without --etcd-user).
                return await self.client.kvstub.Txn(
                    request, timeout=self.request_timeout_s, metadata=self.client.metadata
                )
            except aetcd.rpc.AioRpcError as error:
                aetcd.exceptions._handle_exception(error)

        return await self._call("transaction", run)

    async def _write_txn(
        self, compare: Sequence[Any], success: Sequence[Any], failure: Sequence[Any] = ()
    ) -> Any:
        """A topic/partition write, fenced on the role this process holds (if any).

        Raises NOT_COORDINATOR when the role key is no longer the one we created.
        """
        if self._fence is None:
            return await self.txn(compare, success, failure)
        role, key, revision = self._fence
        response = await self.txn(
            [_cmp_create(key, revision), *compare], success, [*failure, _op_range(key)]
        )
        if not response.succeeded:
            kvs = response.responses[-1].response_range.kvs
            if not kvs or kvs[0].create_revision != revision:
                raise BrookError(
                    "NOT_COORDINATOR",
                    f"this process no longer holds the {role} role",
                    {"role": role},
                )
            del response.responses[-1]
        return response

    def clear_fence(self) -> None:
        """Stops fencing writes (the process stepped down from its role)."""
        self._fence = None

    async def grant_lease(self, ttl_s: int) -> Lease:
        """A new lease with its keep-alive running."""
        sent_at = self.clock.monotonic_s()
        granted = await self._call("lease grant", lambda: self.client.lease(ttl_s))
        lease = Lease(
            self.client,
            granted.id,
            int(granted.ttl),
            granted_at=sent_at,
            clock=self.clock.monotonic_s,
            request_timeout_s=self.request_timeout_s,
        )
        lease.start()
        self._leases.add(lease)
        return lease

    # -- cluster id --------------------------------------------------------------------
    async def cluster_id(self) -> str:
        """The cluster's id, created (as a random UUID) by the first caller."""
        key = self.keys.cluster_id
        candidate = uuid.uuid4().hex
        response = await self.txn(
            [_cmp_create(key, 0)], [_op_put(key, candidate.encode())], [_op_range(key)]
        )
        if response.succeeded:
            return candidate
        return bytes(response.responses[0].response_range.kvs[0].value).decode()

    # -- liveness and roles ------------------------------------------------------------
    async def register_node(
        self, node: NodeInfo, ttl_s: int = 6, *, wait_timeout_s: float | None = None
    ) -> Lease:
        """Registers a live node under a new lease.

        If the node id is still registered by another process (a previous run killed
        less than a TTL ago, or a duplicate), waits for that key to go, up to
        `wait_timeout_s` (default 2 TTLs + 2 s), then raises INVALID_REQUEST. A key left
        by this same process (same non-empty process_id) is replaced at once.
        """
        key = self.keys.node(node.node_id)
        deadline = self.clock.monotonic_s() + (
            wait_timeout_s if wait_timeout_s is not None else 2 * ttl_s + 2
        )
        lease = await self.grant_lease(ttl_s)
        try:
            while True:
                response = await self.txn(
                    [_cmp_create(key, 0)],
                    [_op_put(key, node.to_json(), lease.lease_id)],
                    [_op_range(key)],
                )
                if response.succeeded:
                    return lease
                kvs = response.responses[0].response_range.kvs
                if kvs:
                    current = NodeInfo.from_json(bytes(kvs[0].value))
                    if node.process_id and current.process_id == node.process_id:
                        replaced = await self.txn(
                            [_cmp_mod(key, kvs[0].mod_revision)],
                            [_op_put(key, node.to_json(), lease.lease_id)],
                        )
                        if replaced.succeeded:
                            return lease
                        continue
                    revision = kvs[0].mod_revision
                else:
                    continue  # deleted between compare and read: try again now
                left = deadline - self.clock.monotonic_s()
                if left <= 0:
                    raise BrookError(
                        "INVALID_REQUEST",
                        f"node id {node.node_id} is registered by another live process"
                        f" ({current.address}); refusing to register twice",
                        {"node_id": node.node_id},
                    )
                log.info("node id %d still registered; waiting for the old lease", node.node_id)
                await self._wait_key_deleted(key, revision, min(left, CAMPAIGN_POLL_S))
        except BaseException:
            await lease.revoke()
            self._leases.discard(lease)
            raise

    async def _wait_key_deleted(self, key: bytes, seen_revision: int, timeout_s: float) -> None:
        """Returns when `key` changes after `seen_revision`, or after timeout_s if sooner."""
        with contextlib.suppress(Exception):
            await self.client.watch_once(key, timeout=timeout_s, start_revision=seen_revision + 1)

    async def campaign(
        self, role: str, me: Endpoint, ttl_s: int = 6, *, fence: bool = False
    ) -> Lease:
        """Waits until this process holds `role`; returns the lease that guards it.

        The role key is created only if absent (etcd create_revision == 0), under our
        lease; it disappears when the holder revokes or its lease expires, and waiting
        campaigners are woken by a watch on the key. A key left by this same endpoint id
        (it stepped down after losing its lease) is deleted at once.

        fence: from now on, make this store's topic and partition writes conditional on
        still holding the role (they raise NOT_COORDINATOR otherwise).
        """
        key = self.keys.role(role)
        lease: Lease | None = None
        try:
            while True:
                if lease is None or lease.lost.is_set():
                    if lease is not None:
                        await lease.close()
                        self._leases.discard(lease)
                    lease = await self.grant_lease(ttl_s)
                response = await self.txn(
                    [_cmp_create(key, 0)],
                    [_op_put(key, me.to_json(), lease.lease_id)],
                    [_op_range(key)],
                )
                if response.succeeded:
                    log.info("won the %s role as %s (%s)", role, me.id, me.address)
                    if fence:
                        self._fence = (role, key, int(response.header.revision))
                    return lease
                kvs = response.responses[0].response_range.kvs
                if not kvs:
                    continue
                holder = Endpoint.from_json(bytes(kvs[0].value))
                if holder.id == me.id:
                    await self.txn([_cmp_mod(key, kvs[0].mod_revision)], [_op_delete(key)])
                    continue
                await self._wait_key_deleted(key, kvs[0].mod_revision, CAMPAIGN_POLL_S)
        except BaseException:
            if lease is not None:
                await lease.revoke()
                self._leases.discard(lease)
            raise

    async def resign(self, role: str, me: Endpoint) -> None:
        """Deletes the role key if (and only if) `me` still holds it."""
        key = self.keys.role(role)
        current = await self._call("get role", lambda: self.client.get(key))
        if current is not None and Endpoint.from_json(current.value).id == me.id:
            await self.txn([_cmp_mod(key, current.mod_revision)], [_op_delete(key)])

    async def get_role_holder(self, role: str) -> Endpoint | None:
        """The process holding `role` ("coordinator" or "groups"), if any."""
        key = self.keys.role(role)
        current = await self._call("get role", lambda: self.client.get(key))
        return Endpoint.from_json(current.value) if current is not None else None

    async def list_nodes(self) -> list[NodeInfo]:
        """Live nodes, by id."""
        found = await self._call(
            "list nodes", lambda: self.client.get_prefix(self.keys.nodes_prefix)
        )
        return sorted((NodeInfo.from_json(kv.value) for kv in found), key=lambda n: n.node_id)

    async def put_node_state(self, record: NodeStateRecord) -> None:
        """Stores an operator's node state (fenced on the coordinator role)."""
        key = self.keys.node_state(record.node_id)
        await self._write_txn([], [_op_put(key, record.to_json())])

    async def delete_node_state(self, node_id: int) -> None:
        """Forgets a node's state (it is active again)."""
        await self._write_txn([], [_op_delete(self.keys.node_state(node_id))])

    # -- topics and partitions ---------------------------------------------------------
    async def create_topic(self, topic: TopicRecord, partitions: list[PartitionRecord]) -> None:
        """Creates a topic and its partitions; TOPIC_ALREADY_EXISTS if the name is taken.

        Retrying after a lost answer is safe: finding the same topic id already stored
        counts as success.
        """
        topic_key = self.keys.topic(topic.name)
        absent = _cmp_create(topic_key, 0)
        # First clear stray partition keys of a crashed earlier create (in a transaction
        # of its own: etcd rejects a delete range and a put inside it in one transaction).
        prefix = self.keys.partitions_prefix(topic.name)
        chunks = [
            [_op_delete(prefix, prefix_range_end(prefix))],
            *_topic_write_chunks(topic, partitions, self.keys),
        ]
        for chunk in chunks:
            response = await self._write_txn([absent], chunk, [_op_range(topic_key)])
            if not response.succeeded:
                kvs = response.responses[0].response_range.kvs
                if kvs and TopicRecord.from_json(bytes(kvs[0].value)).topic_id == topic.topic_id:
                    return  # our own earlier attempt got through
                raise BrookError(
                    "TOPIC_ALREADY_EXISTS",
                    f"topic {topic.name!r} already exists",
                    {"topic": topic.name},
                )

    async def add_partitions(
        self, topic: TopicRecord, expected_mod_revision: int, partitions: list[PartitionRecord]
    ) -> bool:
        """Adds partitions and stores `topic` (with the new count), guarded on the topic's
        mod revision; False when the topic changed meanwhile (re-read and re-decide)."""
        guard = _cmp_mod(self.keys.topic(topic.name), expected_mod_revision)
        for chunk in _topic_write_chunks(topic, partitions, self.keys):
            response = await self._write_txn([guard], chunk)
            if not response.succeeded:
                return False
        return True

    async def delete_topic(self, name: str) -> TopicRecord:
        """Deletes a topic and its partition records in one transaction; TOPIC_NOT_FOUND."""
        topic_key = self.keys.topic(name)
        prefix = self.keys.partitions_prefix(name)

        async def delete(record: TopicRecord, revision: int) -> bool:
            response = await self._write_txn(
                [_cmp_mod(topic_key, revision)],
                [_op_delete(topic_key), _op_delete(prefix, prefix_range_end(prefix))],
            )
            return bool(response.succeeded)

        outcome = await compare_and_swap(
            read=lambda: self.get_topic(name),
            decide=lambda record: record,  # whatever it holds now, it goes
            write=delete,
            what=f"topic {name!r} (deleting it)",
            attempts_max=DELETE_ATTEMPTS_MAX,
        )
        if outcome.decision is None:
            raise BrookError("TOPIC_NOT_FOUND", f"topic {name!r} does not exist", {"topic": name})
        return outcome.decision

    async def get_topic(self, name: str) -> tuple[TopicRecord, int] | None:
        """(record, mod_revision), or None when the topic does not exist."""
        key = self.keys.topic(name)
        found = await self._call("get topic", lambda: self.client.get(key))
        if found is None:
            return None
        return TopicRecord.from_json(found.value), found.mod_revision

    async def put_topic(self, topic: TopicRecord, expected_mod_revision: int) -> bool:
        """CAS write of a topic record (configs, partition count); False if it changed."""
        key = self.keys.topic(topic.name)
        response = await self._write_txn(
            [_cmp_mod(key, expected_mod_revision)], [_op_put(key, topic.to_json())]
        )
        return bool(response.succeeded)

    async def list_topics(self) -> list[TopicRecord]:
        """Every topic, by name."""
        found = await self._call(
            "list topics", lambda: self.client.get_prefix(self.keys.topics_prefix)
        )
        return sorted((TopicRecord.from_json(kv.value) for kv in found), key=lambda t: t.name)

    async def get_partitions(self, topic: str) -> list[tuple[PartitionRecord, int]]:
        """A topic's partition records with their mod revisions, by partition index."""
        prefix = self.keys.partitions_prefix(topic)
        found = await self._call("get partitions", lambda: self.client.get_prefix(prefix))
        records = [(PartitionRecord.from_json(kv.value), kv.mod_revision) for kv in found]
        return sorted(records, key=lambda item: item[0].partition)

    async def get_partition(self, topic: str, partition: int) -> tuple[PartitionRecord, int] | None:
        """(record, mod_revision), or None."""
        key = self.keys.partition(topic, partition)
        found = await self._call("get partition", lambda: self.client.get(key))
        if found is None:
            return None
        return PartitionRecord.from_json(found.value), found.mod_revision

    async def cas_partition(self, new: PartitionRecord, expected_mod_revision: int) -> int | None:
        """Writes `new` if the partition's mod revision is still `expected_mod_revision`.

        Returns the new mod revision, or None when someone else wrote first (or the
        partition was deleted): re-read and re-decide.
        """
        key = self.keys.partition(new.topic, new.partition)
        response = await self._write_txn(
            [_cmp_mod(key, expected_mod_revision)], [_op_put(key, new.to_json())]
        )
        if not response.succeeded:
            return None
        return int(response.header.revision)

    # -- snapshot for the cache --------------------------------------------------------
    async def read_snapshot(self) -> tuple[int, list[Any]]:
        """(revision, key-values) of everything the cache holds, read at one revision.

        Covers cluster_id, nodes/, node_states/, and the contiguous range partitions/ ..
        topics/ (which holds partitions, roles and topics); groups and offsets are left to the group
        manager.
        """
        keys = self.keys
        response = await self.txn(
            [],
            [
                _op_range(keys.cluster_id),
                _op_range(keys.nodes_prefix, prefix_range_end(keys.nodes_prefix)),
                _op_range(keys.node_states_prefix, prefix_range_end(keys.node_states_prefix)),
                _op_range(keys.all_partitions_prefix, prefix_range_end(keys.topics_prefix)),
            ],
        )
        kvs: list[Any] = []
        for item in response.responses:
            kvs.extend(item.response_range.kvs)
        return int(response.header.revision), kvs
