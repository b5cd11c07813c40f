"""Integration: the group manager refuses out-of-bounds requests before doing any work,
and a pathological subscription regex cannot stall it. Real etcd, a real group manager
process; topics are written to etcd directly (no storage nodes are needed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from brook.services.metadata import MetadataStore, PartitionRecord, TopicRecord
from brook.v1 import groups_pb2, groups_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.rpc import LOOP_LAG_MS_MAX, RpcFailure, loop_lag_ms, rpc_failure
from tests.harness.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timing, pytest.mark.timeout(60)]

TOPIC = "events"
REDOS_TOPIC = "a" * 28
# A trailer that echoed an oversized field would be at least that field's size.
TRAILER_BYTES_MAX = 2048
ONE_MB = 1 << 20
# A heartbeat on an idle loopback answers in milliseconds; 8.8 s was the defect.
FAST_ANSWER_S = 2.0


async def create_topics(etcd: str, cluster_name: str) -> None:
    store = MetadataStore(etcd, cluster_name=cluster_name)
    await store.connect()
    try:
        for name in (TOPIC, REDOS_TOPIC):
            record = TopicRecord(name, uuid.uuid4().hex, 2, 1)
            partitions = [PartitionRecord(name, p, record.topic_id, (1,)) for p in range(2)]
            await store.create_topic(record, partitions)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def cluster(etcd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    name = f"b{uuid.uuid4().hex[:10]}"
    cluster = LocalCluster(etcd, tmp_path_factory.mktemp("group-bounds"), name)
    cluster.add_groups(args=["--lease-ttl-s", "2"])
    try:
        asyncio.run(create_topics(etcd, name))
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        print(cluster.dump_logs())


@pytest.fixture
async def stub(cluster: LocalCluster) -> AsyncIterator[groups_pb2_grpc.GroupServiceStub]:
    async with grpc.aio.insecure_channel(cluster.address("groups")) as channel:
        service = groups_pb2_grpc.GroupServiceStub(channel)

        async def active() -> bool:
            await service.ListGroups(groups_pb2.ListGroupsRequest(), timeout=5)
            return True

        await eventually(active, timeout_s=20, what="active group manager")
        yield service


def assert_refused(failure: RpcFailure, reason: str = "INVALID_REQUEST") -> None:
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, failure
    assert failure.reason == reason, failure
    assert failure.trailer_bytes < TRAILER_BYTES_MAX, failure.trailer_bytes


async def group_absent(stub: groups_pb2_grpc.GroupServiceStub, group_id: str) -> None:
    failure = await rpc_failure(
        stub.DescribeGroup(groups_pb2.DescribeGroupRequest(group_id=group_id), timeout=5)
    )
    assert failure.reason == "GROUP_NOT_FOUND", failure


async def heartbeat(stub: groups_pb2_grpc.GroupServiceStub, **fields: Any) -> Any:
    return await stub.Heartbeat(groups_pb2.HeartbeatRequest(**fields), timeout=10)


async def test_catastrophic_regex_answers_fast_and_the_manager_keeps_its_role(
    stub: groups_pb2_grpc.GroupServiceStub, cluster: LocalCluster
) -> None:
    """Issue 9, defect 6: subscribing with `(a+)+b` while a topic of 28 `a`s exists
    blocked the group manager 8.8 s and it lost its lease. RE2 matches in linear time."""
    async with grpc.aio.insecure_channel(cluster.address("groups")) as diagnostics:
        await loop_lag_ms(diagnostics)  # reset: measure the heartbeat only
        started = time.monotonic()
        response = await heartbeat(stub, group_id="redos", subscribed_topic_regex="(a+)+b")
        assert time.monotonic() - started < FAST_ANSWER_S
        assert await loop_lag_ms(diagnostics) < LOOP_LAG_MS_MAX
    assert response.member_id
    # A pattern RE2 cannot run in linear time is refused with a clear reason.
    failure = await rpc_failure(
        heartbeat(stub, group_id="redos-2", subscribed_topic_regex="(a)\\1")
    )
    assert_refused(failure, "INVALID_REGEX")
    assert "RE2" in failure.message
    # An oversized pattern is refused by its length.
    failure = await rpc_failure(
        heartbeat(stub, group_id="redos-3", subscribed_topic_regex="a" * ONE_MB)
    )
    assert_refused(failure, "INVALID_REGEX")
    log = cluster.processes["groups"].log_path.read_text(errors="replace")
    assert "lost" not in log, "the group manager lost its lease"


async def test_oversized_heartbeat_fields_are_refused_and_change_nothing(
    stub: groups_pb2_grpc.GroupServiceStub,
) -> None:
    """Issue 9, defect 11: a Heartbeat with a 1 MB client_id answered INTERNAL but left
    the member in memory. Every string and list is bounded before the manager acts."""
    oversized = {
        "client_id": "c" * ONE_MB,
        "client_host": "h" * ONE_MB,
        "member_id": "m" * ONE_MB,
        "instance_id": "i" * ONE_MB,
        "rack_id": "r" * ONE_MB,
        "server_assignor": "x" * ONE_MB,
        "subscribed_topic_names": [TOPIC, "t" * ONE_MB],
    }
    for field, value in oversized.items():
        fields: dict[str, Any] = {"group_id": f"big-{field}", "subscribed_topic_names": [TOPIC]}
        fields[field] = value
        assert_refused(await rpc_failure(heartbeat(stub, **fields)))
        await group_absent(stub, f"big-{field}")
    assert_refused(await rpc_failure(heartbeat(stub, group_id="g" * ONE_MB)))


async def test_invalid_numbers_and_enums_are_refused_and_change_nothing(
    stub: groups_pb2_grpc.GroupServiceStub,
) -> None:
    """Issue 9, defect 12: `session_timeout_ms` -1, ListGroups `states` [99] and a
    committed offset of 2^63-1 were accepted. Each is INVALID_ARGUMENT + ErrorInfo."""
    failure = await rpc_failure(
        heartbeat(
            stub, group_id="neg-session", subscribed_topic_names=[TOPIC], session_timeout_ms=-1
        )
    )
    assert_refused(failure)
    await group_absent(stub, "neg-session")

    failure = await rpc_failure(
        stub.ListGroups(groups_pb2.ListGroupsRequest(states=[99]), timeout=5)
    )
    assert_refused(failure)

    for offset in (2**63 - 1, (1 << 62) + 1, -2):
        commit = groups_pb2.CommitOffsetsRequest(
            group_id="huge-offset",
            member_epoch=-1,
            offsets=[groups_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=offset)],
        )
        assert_refused(await rpc_failure(stub.CommitOffsets(commit, timeout=5)))
    twice = groups_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=3)
    duplicate = groups_pb2.CommitOffsetsRequest(
        group_id="huge-offset", member_epoch=-1, offsets=[twice, twice]
    )
    failure = await rpc_failure(stub.CommitOffsets(duplicate, timeout=5))
    assert_refused(failure)
    assert "appears twice in offsets" in failure.message
    fetched = await stub.FetchOffsets(
        groups_pb2.FetchOffsetsRequest(group_id="huge-offset"), timeout=5
    )
    assert list(fetched.offsets) == []
    # The documented bound itself is accepted.
    ok = groups_pb2.CommitOffsetsRequest(
        group_id="huge-offset",
        member_epoch=-1,
        offsets=[groups_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=1 << 62)],
    )
    response = await stub.CommitOffsets(ok, timeout=5)
    assert not response.results[0].HasField("error")
