"""Client quotas against a real secure cluster (issue 11): set through the Admin API and
`brook quota`, enforced by the node for the authenticated principal. A flooding producer
is held near its rate (back-pressure: its requests wait, none is refused) while another
principal's produce latency stays normal; a wait longer than the call's deadline answers
THROTTLED with a retry hint; Subscribe streams are capped."""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import time
from collections.abc import Callable

import grpc
import pytest

from brook.client import Admin, Producer
from brook.client.cli import quotas as quota_cli
from brook.errors import from_rpc_error
from brook.transport import default_security, set_default_security
from brook.v1 import admin_pb2, groups_pb2, groups_pb2_grpc, storage_pb2, storage_pb2_grpc
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS
from tests.node.helpers import make_batch

pytestmark = [pytest.mark.integration, pytest.mark.timing]

WAIT_S = 30.0
RATE = 400_000  # alice's produce quota, bytes per second
RECORD = 50_000


async def start(local_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    """A secure cluster (one node) with the topic "flood", created as user:admin."""
    cluster = local_cluster(secure=True)
    cluster.add_coordinator()
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.start()
    creds = cluster.client_security("user:admin")
    async with Admin(cluster.address("coordinator"), **creds.kwargs) as admin:
        await eventually(lambda: _nodes(admin, 1), timeout_s=WAIT_S, what="node registered")
        await admin.create_topic("flood", partitions=1, replication_factor=1,
                                 configs={"max_batch_bytes": str(4 << 20)},
                                 wait_for_leaders=True)  # fmt: skip
    return cluster


async def quota_seen(
    cluster: LocalCluster, creds: ClientCredentials, principal: str, rate: int
) -> None:
    """Waits until the node enforces `principal`'s quota of `rate` bytes/s: a request of
    twice the burst makes the next one wait (brook-throttle-ms in its trailer)."""
    async with creds.channel(cluster.address("node-1")) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        request = storage_pb2.ProduceRequest(
            acks=storage_pb2.ACKS_LEADER,
            partitions=[storage_pb2.ProducePartition(
                topic="flood", partition=0, batches=[make_batch([b"x" * (2 * rate)])])],
        )  # fmt: skip

        async def throttled() -> bool:
            call = stub.Produce(request, timeout=WAIT_S)
            await call
            trailer = dict(await call.trailing_metadata() or ())
            return "brook-throttle-ms" in trailer

        await eventually(throttled, timeout_s=WAIT_S, what=f"{principal}'s quota enforced")


async def test_a_flooding_producer_is_held_near_its_quota(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = await start(local_cluster)
    admin_creds = cluster.client_security("user:admin")
    alice = cluster.client_security("user:alice")
    bob = cluster.client_security("user:bob")
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap, **admin_creds.kwargs) as admin:
        stored = await admin.alter_client_quotas(
            [admin_pb2.ClientQuota(principal="user:alice", produce_bytes_per_s=RATE)]
        )
        assert stored[0].produce_bytes_per_s == RATE
        listed = await admin.describe_client_quotas()
        assert [q.principal for q in listed] == ["user:alice"]
    await quota_seen(cluster, alice, "user:alice", RATE)

    bob_latencies: list[float] = []
    window_s = 4.0

    async def flood() -> int:
        sent = 0
        async with Producer(bootstrap, acks="1", linger_ms=5, **alice.kwargs) as producer:
            started = time.monotonic()
            futures = []
            while time.monotonic() - started < window_s:
                futures.append(await producer.send("flood", b"a" * RECORD, partition=0))
                if len(futures) >= 8:  # keep a few in flight, as a real flood would
                    await futures.pop(0)
                    sent += RECORD
            for future in futures:
                await future
                sent += RECORD
        return sent

    async def steady() -> None:
        async with Producer(bootstrap, acks="1", linger_ms=0, **bob.kwargs) as producer:
            await (await producer.send("flood", b"warm", partition=0))
            started = time.monotonic()
            while time.monotonic() - started < window_s:
                began = time.monotonic()
                await (await producer.send("flood", b"b" * 100, partition=0))
                bob_latencies.append(time.monotonic() - began)
                await asyncio.sleep(0.05)  # a steady, light producer: 20 records/s

    started = time.monotonic()
    sent, _ = await asyncio.gather(flood(), steady())
    elapsed = time.monotonic() - started
    rate = sent / elapsed
    print(f"alice {rate:,.0f} B/s against a quota of {RATE:,} B/s over {elapsed:.1f} s;"
          f" bob p50 {statistics.median(bob_latencies) * 1000:.1f} ms,"
          f" max {max(bob_latencies) * 1000:.1f} ms")  # fmt: skip
    # A token bucket allows one second of burst on top of the rate, plus what is in flight.
    assert sent <= RATE * (elapsed + 1) + 9 * RECORD
    assert rate >= 0.5 * RATE  # slowed, not starved
    assert statistics.median(bob_latencies) < 0.2  # the flood does not queue bob's requests


async def test_a_wait_beyond_the_deadline_is_throttled_and_the_cli_manages_quotas(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = await start(local_cluster)
    admin_creds = cluster.client_security("user:admin")
    carol = cluster.client_security("user:carol")
    bootstrap = cluster.address("coordinator")
    previous = default_security()
    set_default_security(admin_creds.security)  # what the CLI's --tls-* flags do
    try:
        base = ["--bootstrap", bootstrap]
        out = await _cli(base, ["set", "--principal", "user:carol",
                                "--produce-bytes-per-s", "100000", "--streams-max", "1"])
        assert "user:carol\tproduce_bytes_per_s=100000 streams_max=1" in out
        assert "user:carol" in await _cli(base, ["list"])
        listed = json.loads(await _cli(base, ["list", "--output", "json"]))
        assert listed == {"quotas": [{"principal": "user:carol",
                                      "produce_bytes_per_s": 100000.0, "streams_max": 1}]}
        await quota_seen(cluster, carol, "user:carol", 100_000)
        async with carol.channel(cluster.address("node-1")) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            # streams_max 1: with one Subscribe open (its first message read), a second
            # is refused.
            wanted = [storage_pb2.FetchPartition(topic="flood", partition=0, fetch_offset=0)]
            first = stub.Subscribe(storage_pb2.SubscribeRequest(partitions=wanted))
            second = None
            try:
                async with asyncio.timeout(WAIT_S):
                    await first.read()
                second = stub.Subscribe(storage_pb2.SubscribeRequest(partitions=wanted))
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    async with asyncio.timeout(WAIT_S):
                        await second.read()
                assert from_rpc_error(refused.value).reason == "THROTTLED"
            finally:
                first.cancel()
                if second is not None:
                    second.cancel()
            big = storage_pb2.ProduceRequest(
                acks=storage_pb2.ACKS_LEADER,
                partitions=[storage_pb2.ProducePartition(
                    topic="flood", partition=0, batches=[make_batch([b"c" * 1_000_000])])],
            )  # fmt: skip
            await stub.Produce(big, timeout=WAIT_S)  # ~10 s of debt now
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Produce(big, timeout=2)
            error = from_rpc_error(caught.value)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.reason == "THROTTLED" and error.retriable
            assert int(error.metadata["retry_after_ms"]) > 1000
        out = await _cli(base, ["remove", "--principal", "user:carol"])
        assert "user:carol\tunlimited" in out
        assert await _cli(base, ["list"]) == ""
    finally:
        set_default_security(previous)


async def _nodes(admin: Admin, count: int) -> bool:
    return len((await admin.describe_cluster()).nodes) >= count


async def _cli(base: list[str], args: list[str]) -> str:
    from brook.client.cli.main import build_parser

    parsed = build_parser().parse_args([*base, "quota", *args])
    out = io.StringIO()
    assert await quota_cli.cmd_quota(parsed, out) == 0
    return out.getvalue()


async def _produce_on_a_new_connection(cluster: LocalCluster, creds: ClientCredentials) -> bool:
    """One tiny produce over a fresh channel (one new TCP connection); True when the node
    made it wait (brook-throttle-ms)."""
    async with creds.channel(cluster.address("node-1")) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        call = stub.Produce(storage_pb2.ProduceRequest(
            acks=storage_pb2.ACKS_LEADER,
            partitions=[storage_pb2.ProducePartition(
                topic="flood", partition=0, batches=[make_batch([b"c"])])],
        ), timeout=WAIT_S)  # fmt: skip
        await call
        return "brook-throttle-ms" in dict(await call.trailing_metadata() or ())


async def test_a_principal_opening_connections_is_held_to_its_connection_rate(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """connections_per_s 2 (Kafka's connection_creation_rate): 10 new connections of dave's
    take about 4 s after the burst, waiting, never refused; erin's are not slowed."""
    cluster = await start(local_cluster)
    admin_creds = cluster.client_security("user:admin")
    dave, erin = cluster.client_security("user:dave"), cluster.client_security("user:erin")
    async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
        await admin.alter_client_quotas(
            [admin_pb2.ClientQuota(principal="user:dave", connections_per_s=2)]
        )
    await eventually(lambda: _produce_on_a_new_connection(cluster, dave), timeout_s=WAIT_S,
                     what="dave's connection quota enforced")  # fmt: skip
    started = time.monotonic()
    for _ in range(10):
        await _produce_on_a_new_connection(cluster, dave)
    dave_s = time.monotonic() - started
    started = time.monotonic()
    waited = [await _produce_on_a_new_connection(cluster, erin) for _ in range(10)]
    erin_s = time.monotonic() - started
    assert dave_s >= 3.5, dave_s  # 10 connections at 2/s, the debt carried in
    assert not any(waited) and erin_s < dave_s / 2, (erin_s, dave_s)


async def test_watch_group_streams_are_capped_by_streams_max(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """streams_max bounds WatchGroup streams on the group manager too: with one open, a
    second is THROTTLED; once the first is closed, another is served."""
    cluster = local_cluster(secure=True)
    cluster.add_coordinator()
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.add_groups()
    cluster.start()
    admin_creds = cluster.client_security("user:admin")
    frank = cluster.client_security("user:frank")
    async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
        await eventually(lambda: _nodes(admin, 1), timeout_s=WAIT_S, what="node registered")
        await admin.create_topic("watched", partitions=1, replication_factor=1,
                                 wait_for_leaders=True)  # fmt: skip
        await admin.alter_client_quotas([admin_pb2.ClientQuota(principal="user:frank",
                                                               streams_max=1)])  # fmt: skip
    async with frank.channel(cluster.address("groups")) as channel:
        stub = groups_pb2_grpc.GroupServiceStub(channel)
        await stub.CommitOffsets(groups_pb2.CommitOffsetsRequest(
            group_id="g-watched",
            offsets=[groups_pb2.OffsetCommit(topic="watched", partition=0, offset=0)],
        ), timeout=WAIT_S)  # fmt: skip
        watch = groups_pb2.WatchGroupRequest(group_id="g-watched")

        async def second_refused() -> bool:
            first = stub.WatchGroup(watch)
            second = None
            try:
                async with asyncio.timeout(WAIT_S):
                    await first.read()
                second = stub.WatchGroup(watch)
                try:
                    async with asyncio.timeout(WAIT_S):
                        await second.read()
                except grpc.aio.AioRpcError as error:
                    return from_rpc_error(error).reason == "THROTTLED"
                return False
            finally:
                first.cancel()
                if second is not None:
                    second.cancel()

        # The group manager's quota cache learns the quota from its watch: bounded wait.
        await eventually(second_refused, timeout_s=WAIT_S, what="frank's streams_max enforced")

        async def served_again() -> bool:
            again = stub.WatchGroup(watch)
            try:
                async with asyncio.timeout(WAIT_S):
                    return (await again.read()).group.group_id == "g-watched"  # type: ignore[union-attr]
            finally:
                again.cancel()

        # The cancelled streams give their slots back once the server sees them end.
        await eventually(served_again, timeout_s=WAIT_S, what="a slot released")
