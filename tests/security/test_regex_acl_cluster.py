"""Regex subscriptions under ACLs, through a real secure cluster (mTLS, `--authorizer acl`):
a principal with describe and read on the prefix "team-a." subscribing with the regex
".*" is assigned only team-a.* topics; a literal topic it may not read is still refused;
its member id used by another principal is unknown; an ACL added or removed re-resolves
the regex on the running group manager within a bounded wait."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from brook.client.admin import Admin, acl_binding, acl_filter
from brook.errors import from_rpc_error
from brook.v1 import common_pb2, groups_pb2, groups_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.security.authz_helpers import ACL_PROPAGATION_S, ADMIN, grant_services, secure_cluster

pytestmark = pytest.mark.integration

WAIT_S = 20.0
GROUP = "regex-g"
TOPICS = {"team-a.orders": 2, "team-a.refunds": 1, "team-b.payroll": 1, "other": 1}
ALICE = "user:alice"


@pytest.fixture
def cluster(etcd: str, tmp_path: Path) -> Iterator[LocalCluster]:
    made = secure_cluster(etcd, tmp_path, nodes=1)
    try:
        yield made
    finally:
        made.stop()
        print(made.dump_logs())


class Member:
    """A raw GroupService member: heartbeats with what it owns, remembers its epoch."""

    def __init__(self, stub: groups_pb2_grpc.GroupServiceStub, regex: str) -> None:
        self.stub = stub
        self.regex = regex
        self.member_id = ""
        self.epoch = 0
        self.owned: dict[str, list[int]] = {}

    async def heartbeat(self) -> set[str]:
        """One heartbeat; the topics of the member's assignment."""
        response = await self.stub.Heartbeat(groups_pb2.HeartbeatRequest(
            group_id=GROUP, member_id=self.member_id, member_epoch=self.epoch,
            subscribed_topic_regex=self.regex if not self.member_id else "",
            owned_partitions=[common_pb2.TopicPartitions(topic=t, partitions=ps)
                              for t, ps in self.owned.items()],
        ), timeout=5)  # fmt: skip
        self.member_id, self.epoch = response.member_id, response.member_epoch
        self.owned = {tps.topic: list(tps.partitions) for tps in response.assignment}
        return set(self.owned)


async def test_a_regex_gets_only_describable_topics(cluster: LocalCluster) -> None:
    admin_creds = cluster.client_security(ADMIN)
    async with Admin(cluster.address("coordinator"), **admin_creds.kwargs) as admin:
        await grant_services(admin)

        async def registered() -> bool:
            return len((await admin.describe_cluster()).nodes) == 1

        await eventually(registered, timeout_s=WAIT_S, what="node 1 registered")
        for name, partitions in TOPICS.items():
            await admin.create_topic(name, partitions, 1, wait_for_leaders=True)
        await admin.create_acls([
            *(acl_binding(ALICE, op, "topic", "team-a.", pattern_type="prefixed")
              for op in ("describe", "read")),
            acl_binding(ALICE, "read", "group", GROUP),
            acl_binding("user:mallory", "read", "group", GROUP),
        ])  # fmt: skip
        alice = cluster.client_security(ALICE)
        mallory = cluster.client_security("user:mallory")
        groups = cluster.address("groups")
        async with alice.channel(groups) as channel, mallory.channel(groups) as other:
            member = Member(groups_pb2_grpc.GroupServiceStub(channel), ".*")

            async def assigned(expected: set[str]) -> bool:
                return await member.heartbeat() == expected

            team_a = {"team-a.orders", "team-a.refunds"}
            await eventually(lambda: assigned(team_a), timeout_s=WAIT_S,
                             what="alice assigned the team-a topics")  # fmt: skip
            assert sum(len(ps) for ps in member.owned.values()) == 3
            await _literal_refused(channel)
            await _id_of_another_principal_refused(other, member)

            # An ACL added: the running manager re-resolves alice's regex.
            payroll = acl_binding(ALICE, "read", "topic", "team-b.payroll")
            await admin.create_acls([payroll])
            await eventually(lambda: assigned(team_a | {"team-b.payroll"}),
                             timeout_s=ACL_PROPAGATION_S + 5,
                             what="team-b.payroll assigned once readable")  # fmt: skip
            # ...and removed: revoked from the member again.
            await admin.delete_acls([acl_filter(principal=ALICE, operation="read",
                                                resource_type="topic",
                                                resource_name="team-b.payroll")])  # fmt: skip
            await eventually(lambda: assigned(team_a), timeout_s=ACL_PROPAGATION_S + 5,
                             what="team-b.payroll revoked once not readable")  # fmt: skip
            assert "other" not in member.owned


async def _literal_refused(channel: grpc.aio.Channel) -> None:
    """A literal topic alice may not read stays an error (as before regexes were
    filtered): PERMISSION_DENIED, not a silently empty assignment."""
    stub = groups_pb2_grpc.GroupServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as rpc:
        await stub.Heartbeat(groups_pb2.HeartbeatRequest(
            group_id=GROUP, subscribed_topic_names=["team-b.payroll"]), timeout=5)  # fmt: skip
    assert rpc.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert from_rpc_error(rpc.value).metadata["resource"] == "team-b.payroll"


async def _id_of_another_principal_refused(channel: grpc.aio.Channel, member: Member) -> None:
    """Mallory (read on the group) heartbeating with alice's member id and epoch is not
    alice: UNKNOWN_MEMBER_ID, and alice keeps her assignment."""
    stub = groups_pb2_grpc.GroupServiceStub(channel)
    for epoch in (member.epoch, -1):
        with pytest.raises(grpc.aio.AioRpcError) as rpc:
            await stub.Heartbeat(groups_pb2.HeartbeatRequest(
                group_id=GROUP, member_id=member.member_id, member_epoch=epoch,
                current_member_epoch=member.epoch), timeout=5)  # fmt: skip
        assert from_rpc_error(rpc.value).reason == "UNKNOWN_MEMBER_ID"
    assert await member.heartbeat() == {"team-a.orders", "team-a.refunds"}
