"""Defect 8: Subscribe streams that never read cost ~32 MB each on the node (60 streams:
2.1 GB RSS; the cap of 256 streams implied ~8 GB), and one client could take every
slot. Real node process; RSS from /proc/<pid>/status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from brook.errors import from_partition_error, from_rpc_error
from brook.services.metadata.store import MetadataStore
from brook.v1 import storage_pb2, storage_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS, NodeClient, create_topic, wait_until
from tests.node.helpers import make_batch

pytestmark = pytest.mark.integration

PER_PEER_MAX = 8
STREAMS = PER_PEER_MAX  # idle streams opened by the greedy client
PARTITIONS = 8
BATCH_BYTES = 1 << 20
BATCHES = 3  # per partition: 24 MiB of data, far more than a stream may hold
# What one idle stream may cost the node: its one message in flight (at most the
# subscribe buffer, 1 MiB by default) and gRPC's copy of it, with room for allocator
# noise. (Before the fix: ~20 MiB, a 4 MiB message held in five copies.)
RSS_PER_STREAM_MAX_BYTES = 4 << 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def own_connection(address: str) -> grpc.aio.Channel:
    """A channel with its own TCP connection (channels to one target share one by
    default, and the per-peer cap counts connections)."""
    return grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def subscribe_request() -> storage_pb2.SubscribeRequest:
    return storage_pb2.SubscribeRequest(
        partitions=[
            storage_pb2.FetchPartition(
                topic="s", partition=index, fetch_offset=0, current_leader_epoch=-1
            )
            for index in range(PARTITIONS)
        ]
    )


async def settled_rss(pid: int) -> int:
    """RSS once it stops growing (the node has pushed what it will to idle streams)."""
    readings: list[int] = []

    async def steady() -> int:
        readings.append(rss_bytes(pid))
        if len(readings) >= 4 and max(readings[-4:]) - min(readings[-4:]) < (2 << 20):
            return readings[-1]
        return 0

    return await eventually(steady, timeout_s=20, interval_s=0.25, what="RSS to settle")


async def test_idle_subscribe_streams_cost_little_and_one_peer_cannot_take_all(
    local_cluster: Callable[..., LocalCluster], store: MetadataStore
) -> None:
    """Defect 8: STREAMS Subscribe streams from one client that never read grow the
    node's RSS by at most RSS_PER_STREAM_MAX_BYTES each; the client's next stream is
    refused with RESOURCE_EXHAUSTED + ErrorInfo (per-peer cap), and a second client can
    still subscribe and read."""
    cluster = local_cluster()
    cluster.add_node(
        1, args=[*FAST_NODE_ARGS, "--subscribe-streams-per-peer-max", str(PER_PEER_MAX)]
    )
    cluster.start()
    await create_topic(
        store, "s", [(1, (1,))] * PARTITIONS, configs={"max_batch_bytes": str(2 << 20)}
    )
    writer = NodeClient(cluster.address("node-1"))
    greedy = own_connection(cluster.address("node-1"))
    other = own_connection(cluster.address("node-1"))
    streams: list[grpc.aio.UnaryStreamCall] = []  # type: ignore[type-arg]
    try:
        await wait_until(lambda: writer.leads("s", 0), 10, "node 1 to lead")
        value = b"v" * (BATCH_BYTES - 256)
        for index in range(PARTITIONS):
            await wait_until(lambda index=index: writer.leads("s", index), 10, "leadership")
            for _ in range(BATCHES):
                answer = await writer.produce(
                    "s", index, [make_batch([value])], acks=storage_pb2.ACKS_LEADER
                )
                assert from_partition_error(answer.error) is None, answer.error
        greedy_stub = storage_pb2_grpc.StorageServiceStub(greedy)
        other_stub = storage_pb2_grpc.StorageServiceStub(other)
        pid = cluster.pid("node-1")
        before = await settled_rss(pid)
        for _ in range(STREAMS):
            streams.append(greedy_stub.Subscribe(subscribe_request(), timeout=60))
        # Every stream is open and has had the chance to push: wait for RSS to settle.
        await asyncio.sleep(0)  # let the calls start
        after = await settled_rss(pid)
        per_stream = (after - before) / STREAMS
        print(
            f"RSS {before >> 20} -> {after >> 20} MiB: {per_stream / (1 << 20):.1f} MiB"
            f" per idle stream"
        )
        assert per_stream <= RSS_PER_STREAM_MAX_BYTES, f"{per_stream:.0f} bytes per stream"
        refused = greedy_stub.Subscribe(subscribe_request(), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await refused.read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value
        assert from_rpc_error(caught.value).reason == "TOO_MANY_REQUESTS"
        fresh = other_stub.Subscribe(subscribe_request(), timeout=10)
        message = await fresh.read()
        assert message.partitions and message.partitions[0].batches
        fresh.cancel()
    finally:
        for stream in streams:
            stream.cancel()
        await writer.close()
        for channel in (greedy, other):
            await channel.close()
