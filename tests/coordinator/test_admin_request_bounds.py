"""Integration: the coordinator refuses out-of-bounds Admin and Metadata requests before
doing any work, with ErrorInfo and a small trailer. Real etcd, a real coordinator
process, one registered (fake) node so topics can be placed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from brook.services.metadata import NodeInfo
from brook.v1 import admin_pb2, admin_pb2_grpc, common_pb2, metadata_pb2, metadata_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.metadata import connected_store
from tests.harness.rpc import LOOP_LAG_MS_MAX, RpcFailure, loop_lag_ms, rpc_failure
from tests.harness.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timing, pytest.mark.timeout(60)]

TOPIC = "bounded"
ONE_MB = 1 << 20
# A trailer that echoed an oversized field would be at least that field's size.
TRAILER_BYTES_MAX = 2048


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.metadata = metadata_pb2_grpc.MetadataServiceStub(channel)


@pytest.fixture
async def stubs(
    etcd: str, cluster_name: str, local_cluster: Callable[..., LocalCluster]
) -> AsyncIterator[Stubs]:
    cluster = local_cluster()
    cluster.add_coordinator(args=["--lease-ttl-s", "2", "--preferred-election-interval-s", "0"])
    async with connected_store(etcd, cluster_name) as store:
        lease = await store.register_node(NodeInfo(1, "127.0.0.1:1"), ttl_s=10)
        try:
            cluster.start()
            async with grpc.aio.insecure_channel(cluster.address("coordinator")) as channel:
                stubs = Stubs(channel)

                async def topic_created() -> bool:
                    request = admin_pb2.CreateTopicRequest(name=TOPIC, partition_count=1)
                    await stubs.admin.CreateTopic(request, timeout=5)
                    return True

                await eventually(topic_created, timeout_s=20, what="active coordinator")
                yield stubs
        finally:
            await lease.revoke()


def assert_refused(failure: RpcFailure, reason: str) -> None:
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, failure
    assert failure.reason == reason, failure
    assert failure.trailer_bytes < TRAILER_BYTES_MAX, failure.trailer_bytes


async def configs_of(stubs: Stubs) -> dict[str, str]:
    request = admin_pb2.DescribeConfigsRequest(topic=TOPIC)
    response = await stubs.admin.DescribeConfigs(request, timeout=5)
    return {entry.name: entry.value for entry in response.configs}


async def test_oversized_topic_names_are_refused_without_echo(stubs: Stubs) -> None:
    """Issue 9, defect 11: GetMetadata with 60 topic names of 1 MB built a 188 MB answer;
    a 10 MB name in DescribeTopic was echoed into the trailer (no ErrorInfo reached the
    client); a 10 MB name in AlterConfigs answered INTERNAL 'ClientError'."""
    name = "n" * ONE_MB
    calls: list[Any] = [
        stubs.metadata.GetMetadata(
            metadata_pb2.GetMetadataRequest(topics=[name, name, name]), timeout=10
        ),
        stubs.admin.DescribeTopic(admin_pb2.DescribeTopicRequest(name=name), timeout=10),
        stubs.admin.AlterConfigs(
            admin_pb2.AlterConfigsRequest(topic=name, set={"retention_ms": "1000"}), timeout=10
        ),
        stubs.admin.DescribeConfigs(admin_pb2.DescribeConfigsRequest(topic=name), timeout=10),
        stubs.admin.DeleteTopic(admin_pb2.DeleteTopicRequest(name=name), timeout=10),
        stubs.admin.CreatePartitions(
            admin_pb2.CreatePartitionsRequest(topic=name, partition_count=2), timeout=10
        ),
        stubs.admin.CreateTopic(admin_pb2.CreateTopicRequest(name=name), timeout=10),
        stubs.admin.ElectLeaders(
            admin_pb2.ElectLeadersRequest(partitions=[common_pb2.PartitionRef(topic=name)]),
            timeout=10,
        ),
    ]
    await loop_lag_ms(stubs.channel)  # reset the window: measure these calls only
    for call in calls:
        assert_refused(await rpc_failure(call), "INVALID_TOPIC_NAME")
    assert await loop_lag_ms(stubs.channel) < LOOP_LAG_MS_MAX


async def test_oversized_configs_are_refused_and_change_nothing(stubs: Stubs) -> None:
    """Issue 9, defect 11: config keys and values are bounded before they are parsed."""
    before = await configs_of(stubs)
    for entries in ({"retention_ms": "9" * ONE_MB}, {"k" * ONE_MB: "1"}):
        request = admin_pb2.AlterConfigsRequest(topic=TOPIC, set=entries)
        assert_refused(
            await rpc_failure(stubs.admin.AlterConfigs(request, timeout=10)), "INVALID_REQUEST"
        )
    request = admin_pb2.AlterConfigsRequest(topic=TOPIC, delete=["d" * ONE_MB])
    assert_refused(
        await rpc_failure(stubs.admin.AlterConfigs(request, timeout=10)), "INVALID_REQUEST"
    )
    create = admin_pb2.CreateTopicRequest(name="never-made", configs={"k" * ONE_MB: "1"})
    assert_refused(
        await rpc_failure(stubs.admin.CreateTopic(create, timeout=10)), "INVALID_REQUEST"
    )
    assert await configs_of(stubs) == before
    missing = await rpc_failure(
        stubs.admin.DescribeTopic(admin_pb2.DescribeTopicRequest(name="never-made"), timeout=5)
    )
    assert missing.reason == "TOPIC_NOT_FOUND"


async def test_unknown_election_type_is_refused(stubs: Stubs) -> None:
    """Issue 9, defect 12: `election_type` 99 was accepted (run as a preferred election)."""
    request = admin_pb2.ElectLeadersRequest(election_type=99)  # type: ignore[arg-type]
    assert_refused(
        await rpc_failure(stubs.admin.ElectLeaders(request, timeout=5)), "INVALID_REQUEST"
    )


async def test_scaling_calls_refuse_out_of_range_inputs_and_change_nothing(
    stubs: Stubs,
) -> None:
    """DrainLeadership, AlterReplicationThrottle and ListReassignments: missing, negative
    and oversized values are INVALID_REQUEST naming the field, and nothing changes."""
    admin = stubs.admin
    drains = [
        admin_pb2.DrainLeadershipRequest(),  # no node_id
        admin_pb2.DrainLeadershipRequest(node_id=-1),
        admin_pb2.DrainLeadershipRequest(node_id=2**31 - 1),  # a valid id, not a live node
        admin_pb2.DrainLeadershipRequest(node_id=1, hold_ms=1),
        admin_pb2.DrainLeadershipRequest(node_id=1, hold_ms=-5),
        admin_pb2.DrainLeadershipRequest(node_id=1, hold_ms=2**62),
    ]
    for drain in drains:
        assert_refused(await rpc_failure(admin.DrainLeadership(drain, timeout=5)),
                       "INVALID_REQUEST")  # fmt: skip
    throttles = [
        admin_pb2.AlterReplicationThrottleRequest(rate_bytes_per_second=-1),
        admin_pb2.AlterReplicationThrottleRequest(rate_bytes_per_second=2**62),
        admin_pb2.AlterReplicationThrottleRequest(rate_bytes_per_second=10, node_id=-1),
        admin_pb2.AlterReplicationThrottleRequest(rate_bytes_per_second=2**62, node_id=1),
    ]
    for throttle in throttles:
        assert_refused(await rpc_failure(admin.AlterReplicationThrottle(throttle, timeout=5)),
                       "INVALID_REQUEST")  # fmt: skip
    described = await admin.DescribeReplicationThrottle(
        admin_pb2.DescribeReplicationThrottleRequest(), timeout=5
    )
    assert described.throttle.cluster_bytes_per_second == 0 and not described.throttle.nodes
    negative = admin_pb2.ListReassignmentsRequest(page_size=-1)
    assert_refused(await rpc_failure(admin.ListReassignments(negative, timeout=5)),
                   "INVALID_REQUEST")  # fmt: skip
    forged = admin_pb2.ListReassignmentsRequest(page_token="not a token" * 1000)
    assert_refused(await rpc_failure(admin.ListReassignments(forged, timeout=5)),
                   "INVALID_PAGE_TOKEN")  # fmt: skip
    # A valid drain of the (fake) only replica moves nothing: no other ISR member.
    drained = await admin.DrainLeadership(admin_pb2.DrainLeadershipRequest(node_id=1), timeout=5)
    assert (drained.moved_count, drained.remaining_count) == (0, 1)
    topic = await admin.DescribeTopic(admin_pb2.DescribeTopicRequest(name=TOPIC), timeout=5)
    assert [p.leader_id for p in topic.topic.partitions] == [1]
