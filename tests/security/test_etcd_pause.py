"""The security caches with etcd paused (SIGSTOP), against a real secure cluster (mTLS,
`--authorizer acl`, one node leading a topic).

Every process keeps ACLs (`AclCache`) and client quotas (`QuotaCache`) in etcd-watch-fed
caches (services/metadata/prefix_cache.py), so no etcd call sits on the data path: while
etcd does not answer, a node decides from its last snapshot, and its watches fail (the
gRPC keep-alive gives up on the silent etcd after 10-15 s) and are reloaded with capped
back-off. The test holds etcd stopped until the node's log says both watches failed and
then checks, still paused: a granted produce and fetch succeed; a principal without the
ACL is PERMISSION_DENIED (not allowed by accident, not UNAVAILABLE); a quota still
throttles; the record API (ProduceRecords/ReadRecords) still serves and still refuses.
After SIGCONT an ACL added and one removed take effect within a bounded wait (the watch
is back).

Leases: a node that cannot renew its registration lease stops leading (docs: "a process
that loses its etcd lease stops acting"): the node and coordinator here run with a 60 s
lease TTL of 90 s (a node acts while `time_left_s() > 0`: at least TTL*3/4 - TTL/3 =
37.5 s after the pause began, the last refresh having been up to TTL/3 before it), so the
pause, bounded by PAUSE_MAX_S, stays within what the lease tolerates; the test asserts
the node never logged a lost lease.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from brook.client.admin import Admin, acl_binding, acl_filter
from brook.clock import ManualClock
from brook.errors import BrookError, Reason, from_rpc_error
from brook.services.common.principal import Principal
from brook.services.common.quotas import QuotaConfig
from brook.services.metadata.quotas import QuotaControl
from brook.services.metadata.store import MetadataStore
from brook.v1 import (
    admin_pb2,
    record_service_pb2,
    record_service_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.etcd import EtcdServer
from tests.harness.secure import ADMIN, AUTHZ_ARGS
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS
from tests.node.helpers import make_batch
from tests.security.authz_helpers import ACL_PROPAGATION_S, grant_services, raw_produce

pytestmark = [pytest.mark.timeout(240)]

TOPIC = "paused"
LEASE_TTL_S = 90
LEASE_ARGS = ["--lease-ttl-s", str(LEASE_TTL_S)]
# Bound on the node noticing that etcd is silent (a keep-alive ping every 10 s, 5 s to
# answer it; and a loaded box).
WATCH_FAIL_S = 25.0
# The pause never lasts longer than this: within the node's lease (see the doc).
PAUSE_MAX_S = 32.0
# What a node logs when its lease lapses (store.Lease, and the node's own line).
LEASE_LOST = re.compile(r"lease( [0-9a-f]+)? lost")
# After SIGCONT: the reload back-off (at most 2 s) plus the watch's propagation.
RESUMED_S = ACL_PROPAGATION_S + 15.0
WAIT_S = 30.0
QUOTA_RATE = 100_000  # carol's produce quota, bytes per second


def node_log(cluster: LocalCluster) -> str:
    return Path(cluster.processes["node-1"].log_path).read_text(errors="replace")


async def produce_ok(creds: ClientCredentials, address: str, value: bytes = b"v") -> bool:
    return (await raw_produce(creds, address, [TOPIC], value))[TOPIC] is None


async def fetch(creds: ClientCredentials, address: str) -> storage_pb2.FetchedPartition:
    async with creds.channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        response = await stub.Fetch(storage_pb2.FetchRequest(partitions=[
            storage_pb2.FetchPartition(topic=TOPIC, partition=0, fetch_offset=0)]),
            timeout=5)  # fmt: skip
        return response.partitions[0]


async def quota_throttles(creds: ClientCredentials, address: str) -> bool:
    """Two seconds' worth of carol's quota, then one more request: that one waits
    (brook-throttle-ms in its trailer)."""
    async with creds.channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)

        def request(size: int) -> storage_pb2.ProduceRequest:
            return storage_pb2.ProduceRequest(acks=storage_pb2.ACKS_LEADER, partitions=[
                storage_pb2.ProducePartition(topic=TOPIC, partition=0,
                                             batches=[make_batch([b"q" * size])])])  # fmt: skip

        await stub.Produce(request(2 * QUOTA_RATE), timeout=WAIT_S)
        call = stub.Produce(request(100), timeout=WAIT_S)
        await call
        trailer = dict(await call.trailing_metadata() or ())
        return "brook-throttle-ms" in trailer


async def record_api(creds: ClientCredentials, address: str) -> tuple[int, int]:
    """ProduceRecords one record, ReadRecords from the start: (its offset, records read)."""
    async with creds.channel(address) as channel:
        stub = record_service_pb2_grpc.RecordServiceStub(channel)
        produced = await stub.ProduceRecords(record_service_pb2.ProduceRecordsRequest(
            topic=TOPIC, partition=0,
            records=[record_service_pb2.PlainRecord(value=b"record")]), timeout=10)  # fmt: skip
        assert not produced.results[0].HasField("error"), produced
        read = await stub.ReadRecords(
            record_service_pb2.ReadRecordsRequest(topic=TOPIC, partition=0), timeout=10
        )
        return produced.results[0].offset, len(read.records)


async def refused(creds: ClientCredentials, address: str) -> None:
    """Every data-path and record-API call of a principal without ACLs: PERMISSION_DENIED
    (per partition for Produce, the call's status otherwise)."""
    assert await raw_produce(creds, address, [TOPIC]) == {TOPIC: Reason.PERMISSION_DENIED}
    async with creds.channel(address) as channel:
        records = record_service_pb2_grpc.RecordServiceStub(channel)
        storage = storage_pb2_grpc.StorageServiceStub(channel)
        for call, request in (
            (storage.Fetch, storage_pb2.FetchRequest(partitions=[
                storage_pb2.FetchPartition(topic=TOPIC, partition=0, fetch_offset=0)])),
            (records.ProduceRecords, record_service_pb2.ProduceRecordsRequest(
                topic=TOPIC, records=[record_service_pb2.PlainRecord(value=b"x")])),
            (records.ReadRecords, record_service_pb2.ReadRecordsRequest(topic=TOPIC)),
        ):  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as rpc:
                await call(request, timeout=10)
            assert rpc.value.code() is grpc.StatusCode.PERMISSION_DENIED, rpc.value
            assert from_rpc_error(rpc.value).reason is Reason.PERMISSION_DENIED


@pytest.mark.integration
async def test_security_caches_serve_with_etcd_paused(
    etcd_server: EtcdServer, local_cluster: Callable[..., LocalCluster]
) -> None:
    cluster = local_cluster(etcd=etcd_server.address, secure=True, security_args=AUTHZ_ARGS)
    cluster.add_coordinator(args=LEASE_ARGS)
    cluster.add_node(1, args=[*FAST_NODE_ARGS, *LEASE_ARGS])
    cluster.start()
    admin_creds = cluster.client_security(ADMIN)
    alice = cluster.client_security("user:alice")  # write, read on the topic
    carol = cluster.client_security("user:carol")  # write on the topic, a produce quota
    mallory = cluster.client_security("user:mallory")  # no ACL
    async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
        await grant_services(admin)

        async def registered() -> bool:
            return len((await admin.describe_cluster()).nodes) == 1

        await eventually(registered, timeout_s=WAIT_S, what="node 1 registered")
        await admin.create_topic(TOPIC, 1, 1, wait_for_leaders=True,
                                 configs={"max_batch_bytes": str(1 << 20)})  # fmt: skip
        await admin.create_acls([
            *(acl_binding("user:alice", op, "topic", TOPIC) for op in ("write", "read")),
            acl_binding("user:carol", "write", "topic", TOPIC),
        ])  # fmt: skip
        await admin.alter_client_quotas(
            [admin_pb2.ClientQuota(principal="user:carol", produce_bytes_per_s=QUOTA_RATE)]
        )
        leader = cluster.address("node-1")
        # Before the pause: the node has the ACLs and the quota.
        await eventually(lambda: produce_ok(alice, leader), timeout_s=WAIT_S,
                         what="alice's produce allowed")  # fmt: skip
        await eventually(lambda: quota_throttles(carol, leader), timeout_s=WAIT_S,
                         what="carol's quota enforced")  # fmt: skip
        await refused(mallory, leader)
        log_before = len(node_log(cluster))

        paused_at = time.monotonic()
        etcd_server.pause()
        try:

            async def watches_failed() -> bool:
                text = node_log(cluster)[log_before:]
                return "ACL watch failed" in text and "quota watch failed" in text

            await eventually(watches_failed, timeout_s=WATCH_FAIL_S, interval_s=0.2,
                             what="the node's ACL and quota watches failed")  # fmt: skip
            # etcd still stopped: every decision comes from the caches' last snapshot.
            assert await produce_ok(alice, leader, b"while paused")
            fetched = await fetch(alice, leader)
            assert not fetched.HasField("error") or not fetched.error.reason, fetched.error
            assert fetched.batches and fetched.high_watermark >= 2
            await refused(mallory, leader)
            assert await quota_throttles(carol, leader)
            offset, read = await record_api(alice, leader)
            assert read == offset + 1  # everything up to the record just produced
            still_paused_s = time.monotonic() - paused_at
            assert still_paused_s < PAUSE_MAX_S, f"paused {still_paused_s:.1f}s: lease at risk"
            assert not LEASE_LOST.search(node_log(cluster)[log_before:])
        finally:
            etcd_server.resume()

        # After SIGCONT: ACL changes reach the node again (its watch resumed).
        grant = acl_binding("user:mallory", "write", "topic", TOPIC)

        async def granted() -> bool:
            await admin.create_acls([grant])
            return True

        await eventually(granted, timeout_s=WAIT_S, what="CreateAcls after the pause")
        await eventually(lambda: produce_ok(mallory, leader), timeout_s=RESUMED_S,
                         what="mallory's new ACL in force on the node")  # fmt: skip

        async def alice_denied() -> bool:
            return (await raw_produce(alice, leader, [TOPIC]))[TOPIC] is Reason.PERMISSION_DENIED

        await admin.delete_acls([acl_filter(principal="user:alice", operation="write",
                                            resource_type="topic", resource_name=TOPIC)])
        await eventually(alice_denied, timeout_s=RESUMED_S,
                         what="alice's removed ACL gone on the node")  # fmt: skip
        assert not LEASE_LOST.search(node_log(cluster)[log_before:])


async def test_a_quota_reload_that_changes_nothing_keeps_what_is_owed() -> None:
    """The quota cache reloads after every watch failure (an etcd pause). Bug found by
    this issue: each reload refilled every principal's buckets, so a flooding principal's
    debt was forgiven at every etcd hiccup. A reload of the same quotas keeps the debt; a
    real change still applies."""
    store = MetadataStore("127.0.0.1:1", cluster_name="quota-reload")  # never dialled
    clock = ManualClock()
    control = QuotaControl(store, clock=clock)
    carol = Principal("user", "carol")
    key = store.keys.quota(str(carol))
    control.cache.values = {key: QuotaConfig(produce_bytes_per_s=1000)}
    control.cache._bump()  # the first load
    control.quotas.charge(carol, "produce_bytes_per_s", 6000)  # 5 s owed after the burst
    control.cache._bump()  # a reload: the same keys
    with pytest.raises(BrookError) as caught:
        await control.quotas.admit(carol, budget_s=1)
    assert caught.value.reason == "THROTTLED"
    # A changed rate is applied (its bucket starts full).
    control.cache.values = {key: QuotaConfig(produce_bytes_per_s=2000)}
    control.cache._bump()
    assert control.quotas.config_for(carol).produce_bytes_per_s == 2000
    assert await control.quotas.admit(carol, budget_s=1) == 0.0
