"""Authorization through the real thing (issue 11): a secure cluster (mTLS; each client a
certificate whose CN maps to its principal) with `--authorizer acl` on every process.

What it proves: with no ACL nothing is allowed but what is granted, and a refused call
changes nothing (DeleteTopic, retention_ms=0, unclean elections, ACL changes); read on
one topic neither writes it nor reads another; multi-partition calls answer the denied
topics per partition and serve the rest; prefix ACLs; deny overrides allow; a super user
does everything; an ACL change takes effect without a restart within a bounded wait;
refusals land in the audit log; and every RPC the processes serve is in the table.

One cluster (coordinator, group manager, two nodes) serves every test of the module."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from brook.client import Consumer, Producer
from brook.client.admin import Admin, GroupAdmin, acl_binding, acl_filter, format_acl
from brook.client.cli import acls as acl_cli
from brook.client.records import TopicPartition
from brook.errors import BrookError, Reason, from_partition_error, from_rpc_error, partitioned
from brook.services.common.authz import RPC_TABLE
from brook.transport import default_security, set_default_security
from brook.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    groups_pb2,
    groups_pb2_grpc,
    metadata_pb2,
    metadata_pb2_grpc,
    record_service_pb2,
    record_service_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.wait import eventually
from tests.security.authz_helpers import (
    ACL_PROPAGATION_S,
    ADMIN,
    audit_lines,
    grant_services,
    raw_produce,
    refused,
    secure_cluster,
)

pytestmark = pytest.mark.integration

WAIT_S = 20.0


@pytest.fixture(scope="module")
def cluster(etcd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    made = secure_cluster(etcd, tmp_path_factory.mktemp("authz"), nodes=2)
    try:
        yield made
    finally:
        made.stop()
        print(made.dump_logs())


def bootstrap(cluster: LocalCluster) -> str:
    return cluster.address("coordinator")


def admin_of(cluster: LocalCluster, principal: str) -> Admin:
    return Admin(bootstrap(cluster), **cluster.client_security(principal).kwargs)


@pytest.fixture(scope="module")
def topics(cluster: LocalCluster) -> list[str]:
    """Topics every test may read: orders, payments, etl-a (RF 2, one partition each)."""
    names = ["orders", "payments", "etl-a"]

    async def setup() -> None:
        async with admin_of(cluster, ADMIN) as admin:
            await grant_services(admin)
            await eventually(lambda: _nodes(admin, 2), timeout_s=WAIT_S, what="2 nodes")
            for name in names:
                await admin.create_topic(name, 1, 2, wait_for_leaders=True)

    asyncio.run(setup())
    return names


async def _nodes(admin: Admin, count: int) -> bool:
    return len((await admin.describe_cluster()).nodes) >= count


async def produce(cluster: LocalCluster, creds: ClientCredentials, topic: str,
                  value: bytes = b"v") -> None:  # fmt: skip
    async with Producer(bootstrap(cluster), acks="all", linger_ms=1, retries=0,
                        **creds.kwargs) as producer:  # fmt: skip
        future = await producer.send(topic, value, partition=0)
        await asyncio.wait_for(producer.flush(), WAIT_S)
        future.result()


async def first_record(cluster: LocalCluster, creds: ClientCredentials, topic: str) -> bytes:
    async with Consumer(bootstrap(cluster), auto_offset_reset="earliest",
                        **creds.kwargs) as consumer:  # fmt: skip
        consumer.assign([TopicPartition(topic, 0)])
        async with asyncio.timeout(WAIT_S):
            while True:
                records = await consumer.poll(timeout_ms=300)
                if records:
                    return bytes(records[0].value or b"")


def leader_address(cluster: LocalCluster, metadata: metadata_pb2.GetMetadataResponse,
                   topic: str) -> str:  # fmt: skip
    nodes = {n.node_id: n.address for n in metadata.nodes}
    entry = next(t for t in metadata.topics if t.name == topic)
    return nodes[entry.partitions[0].leader_id]


async def granted(admin: Admin, *bindings: admin_pb2.AclBinding) -> None:
    await admin.create_acls(list(bindings))


async def test_every_served_rpc_is_in_the_table(cluster: LocalCluster) -> None:
    """Server reflection on each process lists what it serves; every method of it has an
    entry in the operations table (so a new RPC cannot ship unguarded)."""
    admin = cluster.client_security(ADMIN)
    seen: set[str] = set()
    for name in ("coordinator", "groups", "node-1"):
        async with admin.channel(cluster.address(name)) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            services = await _reflect(stub, reflection_pb2.ServerReflectionRequest(
                list_services=""))  # fmt: skip
            for service in services.list_services_response.service:
                answer = await _reflect(stub, reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol=service.name))  # fmt: skip
                for raw in answer.file_descriptor_response.file_descriptor_proto:
                    file = descriptor_pb2.FileDescriptorProto.FromString(raw)
                    for defined in file.service:
                        full = f"{file.package}.{defined.name}" if file.package else defined.name
                        if full == service.name:
                            seen |= {f"{full}/{m.name}" for m in defined.method}
    assert "brook.v1.ReplicaService/ReplicaFetch" in seen
    assert "brook.v1.AdminService/CreateAcls" in seen
    missing = sorted(seen - set(RPC_TABLE))
    assert not missing, f"served RPCs missing from the operations table: {missing}"


async def _reflect(
    stub: reflection_pb2_grpc.ServerReflectionStub, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    async for response in stub.ServerReflectionInfo(iter([request]), timeout=10):
        return response
    raise AssertionError("no reflection answer")


async def test_without_acls_nothing_is_allowed_and_nothing_changes(
    cluster: LocalCluster, topics: list[str]
) -> None:
    """The issue's anonymous-attacker list, as a principal with no ACL: every call is
    PERMISSION_DENIED (with its ErrorInfo) and the cluster is unchanged afterwards."""
    mallory = cluster.client_security("user:mallory")
    async with admin_of(cluster, "user:mallory") as attacker, admin_of(cluster, ADMIN) as admin:
        before = await admin.describe_topic("orders")
        with refused() as caught:
            await attacker.delete_topic("orders")
        assert caught[0].metadata == {"principal": "user:mallory", "operation": "delete",
                                      "resource_type": "topic", "resource": "orders"}
        with refused():
            await attacker.alter_configs("orders", {"retention_ms": "0"})
        with refused():
            await attacker.elect_leaders([("orders", 0)], "unclean")
        with refused():
            await attacker.reassign_partitions("orders", {0: [1]})
        with refused():
            await attacker.create_topic("mallory-topic", 1, 1)
        with refused():
            await attacker.create_acls([acl_binding("user:mallory", "all", "cluster")])
        with refused():
            await attacker.describe_acls()
        with refused():
            await attacker.describe_cluster()
        with refused():
            await attacker.describe_configs("orders")
        assert await attacker.list_topics() == []
        metadata = await attacker.get_metadata()
        assert [t.name for t in metadata.topics] == [] and metadata.nodes
        named = await attacker.get_metadata(["orders", "no-such-topic"])
        assert [from_partition_error(t.error).reason for t in named.topics] == [  # type: ignore[union-attr]
            Reason.PERMISSION_DENIED, Reason.PERMISSION_DENIED]  # names do not leak
        leader = leader_address(cluster, await admin.get_metadata(["orders"]), "orders")
        assert await raw_produce(mallory, leader, ["orders"]) == {
            "orders": Reason.PERMISSION_DENIED}
        after = await admin.describe_topic("orders")
        assert after == before  # still there, same configs, same leader and epoch
        assert "mallory-topic" not in {t.name for t in await admin.list_topics()}
        assert await admin.describe_acls(acl_filter(principal="user:mallory")) == []

        # The data path and the record API, called directly.
        async with mallory.channel(leader) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as rpc:
                await storage_pb2_grpc.StorageServiceStub(channel).Fetch(
                    storage_pb2.FetchRequest(partitions=[storage_pb2.FetchPartition(
                        topic="orders", partition=0, fetch_offset=0)]), timeout=5)
            assert from_rpc_error(rpc.value).reason is Reason.PERMISSION_DENIED
            records = record_service_pb2_grpc.RecordServiceStub(channel)
            for call, request in (
                (records.ProduceRecords, record_service_pb2.ProduceRecordsRequest(
                    topic="orders", records=[record_service_pb2.PlainRecord(value=b"x")])),
                (records.ReadRecords, record_service_pb2.ReadRecordsRequest(topic="orders")),
            ):  # fmt: skip
                with pytest.raises(grpc.aio.AioRpcError) as rpc:
                    await call(request, timeout=5)
                assert from_rpc_error(rpc.value).reason is Reason.PERMISSION_DENIED

    async with GroupAdmin(bootstrap(cluster), **mallory.kwargs) as groups:
        for attempt in (groups.delete("team-a"), groups.reset_offsets(_reset("team-a")),
                        groups.describe("team-a")):  # fmt: skip
            with refused():
                await attempt
        assert await groups.list_groups() == []

    denied = [line for line in audit_lines(cluster, "coordinator")
              if line["principal"] == "user:mallory"]  # fmt: skip
    assert {(line["method"], line["result"]) for line in denied} >= {
        ("brook.v1.AdminService/DeleteTopic", "denied"),
        ("brook.v1.AdminService/AlterConfigs", "denied"),
        ("brook.v1.AdminService/ElectLeaders", "denied"),
        ("brook.v1.AdminService/CreateAcls", "denied"),
    }
    line = next(x for x in denied if x["method"].endswith("/DeleteTopic"))
    assert line["operation"] == "delete" and line["resource_type"] == "topic"
    assert line["resource"] == "orders" and line["peer"] and line["basis"] == "no_acl"
    node_lines = audit_lines(cluster, "node-1") + audit_lines(cluster, "node-2")
    assert any(x["principal"] == "user:mallory" and x["method"].endswith("/ReadRecords")
               for x in node_lines)  # fmt: skip


async def test_read_on_one_topic_reads_only_that_topic(
    cluster: LocalCluster, topics: list[str]
) -> None:
    """alice may read orders: she consumes it; she cannot write it or read payments; a
    Fetch naming both answers payments PERMISSION_DENIED and serves orders."""
    alice = cluster.client_security("user:alice")
    async with admin_of(cluster, ADMIN) as admin:
        await produce(cluster, cluster.client_security(ADMIN), "orders", b"for-alice")
        await granted(admin, acl_binding("user:alice", "read", "topic", "orders"))
        metadata = await admin.get_metadata(["orders", "payments"])
    assert await first_record(cluster, alice, "orders") == b"for-alice"
    with refused():
        await produce(cluster, alice, "orders")
    leaders = {leader_address(cluster, metadata, t) for t in ("orders", "payments")}
    for address in leaders:  # a node leading either: ask for both
        async with alice.channel(address) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            response = await partitioned(stub.Fetch(storage_pb2.FetchRequest(partitions=[
                storage_pb2.FetchPartition(topic="orders", partition=0, fetch_offset=0),
                storage_pb2.FetchPartition(topic="payments", partition=0, fetch_offset=0),
            ]), timeout=5), storage_pb2.FetchResponse)  # fmt: skip
            by_topic = {p.topic: p for p in response.partitions}
            payments = from_partition_error(by_topic["payments"].error)
            assert payments is not None and payments.reason is Reason.PERMISSION_DENIED
            orders = from_partition_error(by_topic["orders"].error)
            if address == leader_address(cluster, metadata, "orders"):
                assert orders is None and by_topic["orders"].batches
            else:
                assert orders is not None and orders.reason is not Reason.PERMISSION_DENIED
    # A topic alice may not describe is PERMISSION_DENIED at once, not TOPIC_NOT_FOUND
    # after the client's wait for the topic to appear.
    started = time.monotonic()
    with refused():
        await produce(cluster, alice, "payments")
    assert time.monotonic() - started < 2.5
    async with admin_of(cluster, "user:alice") as as_alice:
        assert [t.name for t in await as_alice.list_topics()] == ["orders"]  # describe implied
        with refused():
            await as_alice.describe_configs("orders")


async def test_prefix_deny_and_changes_without_restart(
    cluster: LocalCluster, topics: list[str]
) -> None:
    """etl may write every etl-* topic (prefixed); a deny on etl-a then overrides it, and
    removing the deny restores it: each change reaches the nodes by watch, no restart,
    within ACL_PROPAGATION_S."""
    etl = cluster.client_security("user:etl")
    async with admin_of(cluster, ADMIN) as admin:
        await granted(admin, acl_binding("user:etl", "write", "topic", "etl-",
                                         pattern_type="prefixed"))  # fmt: skip
        await produce(cluster, etl, "etl-a")
        metadata = await admin.get_metadata(["orders", "etl-a"])
        if leader_address(cluster, metadata, "orders") == leader_address(cluster, metadata,
                                                                         "etl-a"):
            # One Produce over both: the denied topic fails, the other is appended.
            assert await raw_produce(etl, leader_address(cluster, metadata, "orders"),
                                     ["orders", "etl-a"]) == {
                "orders": Reason.PERMISSION_DENIED, "etl-a": None}
        else:
            assert await raw_produce(etl, leader_address(cluster, metadata, "orders"),
                                     ["orders"]) == {"orders": Reason.PERMISSION_DENIED}
        deny = acl_binding("user:etl", "write", "topic", "etl-a", permission="deny")
        started = time.monotonic()
        await granted(admin, deny)
        await eventually(lambda: _refused_produce(cluster, etl, "etl-a"),
                         timeout_s=ACL_PROPAGATION_S, what="the deny in force")  # fmt: skip
        took_s = time.monotonic() - started
        deleted = await admin.delete_acls([acl_filter(principal="user:etl", permission="deny",
                                                      resource_type="topic")])  # fmt: skip
        assert [format_acl(b) for b in deleted] == [format_acl(deny)]
        await eventually(lambda: _produces(cluster, etl, "etl-a"),
                         timeout_s=ACL_PROPAGATION_S, what="the deny lifted")  # fmt: skip
    assert took_s < ACL_PROPAGATION_S


async def _refused_produce(cluster: LocalCluster, creds: ClientCredentials, topic: str) -> bool:
    try:
        await produce(cluster, creds, topic)
    except BrookError as error:
        return error.reason is Reason.PERMISSION_DENIED
    return False


async def _produces(cluster: LocalCluster, creds: ClientCredentials, topic: str) -> bool:
    try:
        await produce(cluster, creds, topic)
    except BrookError:
        return False
    return True


async def test_super_user_does_everything(cluster: LocalCluster, topics: list[str]) -> None:
    """user:admin has no ACL and may do everything (and a deny does not stop it)."""
    async with admin_of(cluster, ADMIN) as admin:
        await granted(admin, acl_binding(ADMIN, "all", "topic", "*", permission="deny"))
        await admin.create_topic("su-topic", 1, 1, wait_for_leaders=True)
        await admin.alter_configs("su-topic", {"retention_ms": "60000"})
        await produce(cluster, cluster.client_security(ADMIN), "su-topic")
        assert (await admin.describe_cluster()).nodes
        await admin.delete_topic("su-topic")
        await admin.delete_acls([acl_filter(principal=ADMIN)])
    allowed = [x for x in audit_lines(cluster, "coordinator")
               if x["principal"] == ADMIN and x["result"] == "allowed"]  # fmt: skip
    assert {x["method"].rsplit("/", 1)[1] for x in allowed} >= {
        "CreateTopic", "AlterConfigs", "DeleteTopic", "CreateAcls", "DeleteAcls"}
    assert all(x["basis"] == "super_user" for x in allowed)


async def test_acl_admin_api_and_cli(cluster: LocalCluster, topics: list[str]) -> None:
    """CreateAcls/DescribeAcls (filters, match, pages)/DeleteAcls (answers what it
    deleted), and `brook acl add|list|remove` with Kafka's flags; creating ACLs needs
    alter on the cluster, listing them describe."""
    async with admin_of(cluster, ADMIN) as admin:
        await granted(admin,
                      acl_binding("user:dana", "read", "topic", "reports"),
                      acl_binding("user:dana", "describe", "topic", "rep", pattern_type="prefixed"),
                      acl_binding("user:erin", "read", "group", "reports"))  # fmt: skip
        exact = await admin.describe_acls(acl_filter(resource_type="topic",
                                                     resource_name="reports"))  # fmt: skip
        assert [format_acl(b) for b in exact] == [
            format_acl(acl_binding("user:dana", "read", "topic", "reports"))]
        applying = await admin.describe_acls(acl_filter(
            resource_type="topic", resource_name="reports", pattern_type="match"))  # fmt: skip
        assert len(applying) == 2
        paged = await admin.describe_acls(acl_filter(principal="user:dana"), page_size=1)
        assert len(paged) == 2
        with refused("INVALID_REQUEST"):
            await admin.delete_acls([admin_pb2.AclFilter()])
        deleted = await admin.delete_acls([acl_filter(principal="user:dana")])
        assert len(deleted) == 2
        assert await admin.delete_acls([acl_filter(principal="user:dana")]) == []
        with refused("INVALID_REQUEST"):
            await admin.create_acls([acl_binding("bad", "read", "topic", "x")])

    async with admin_of(cluster, "user:frank") as frank:
        with refused():
            await frank.describe_acls()
        async with admin_of(cluster, ADMIN) as admin:
            await granted(admin, acl_binding("user:frank", "describe", "cluster"))
        await eventually(lambda: _can_describe_acls(frank), timeout_s=ACL_PROPAGATION_S,
                         what="frank's describe")  # fmt: skip
        with refused():
            await frank.create_acls([acl_binding("user:frank", "all", "cluster")])

    admin_creds = cluster.client_security(ADMIN)
    previous = default_security()
    set_default_security(admin_creds.security)  # what the CLI's --tls-* flags do
    try:
        base = ["--bootstrap", bootstrap(cluster)]
        out = await _cli(base, ["add", "--allow-principal", "user:gina", "--operation", "read",
                                "--operation", "describe", "--topic", "t1", "--topic", "t2"])
        assert out.count("added") == 4
        out = await _cli(base, ["add", "--deny-principal", "user:gina", "--operation", "write",
                                "--topic", "gina-", "--resource-pattern-type", "prefixed"])
        assert "permission=deny" in out and "pattern=prefixed" in out
        out = await _cli(base, ["list", "--principal", "user:gina"])
        assert len(out.splitlines()) == 5
        listed = json.loads(await _cli(base, ["list", "--principal", "user:gina", "-o", "json"]))
        assert len(listed["acls"]) == 5
        assert {a["principal"] for a in listed["acls"]} == {"user:gina"}
        out = await _cli(base, ["list", "--topic", "t1"])
        assert len(out.splitlines()) == 2
        out = await _cli(base, ["remove", "--allow-principal", "user:gina", "--operation",
                                "read", "--topic", "t1"])
        assert "1 ACLs removed" in out
        out = await _cli(base, ["remove", "--topic", "t2"])
        assert "2 ACLs removed" in out
        out = await _cli(base, ["add", "--allow-principal", "user:gina", "--operation", "alter",
                                "--cluster"])
        assert "resource=cluster:brook-cluster" in out
    finally:
        set_default_security(previous)


async def _can_describe_acls(admin: Admin) -> bool:
    try:
        await admin.describe_acls()
    except BrookError:
        return False
    return True


async def _cli(base: list[str], args: list[str]) -> str:
    from brook.client.cli.main import build_parser

    parsed = build_parser().parse_args([*base, "acl", *args])
    out = io.StringIO()
    assert await acl_cli.cmd_acl(parsed, out) == 0
    return out.getvalue()


async def test_group_protections(cluster: LocalCluster, topics: list[str]) -> None:
    """A member of team-g (read on the group and the topic) is described without its id
    and epoch to a principal that may only describe the group, with them to one with alter;
    the describer cannot reset or delete the group nor make the member leave (no epoch);
    ListGroups shows only describable groups."""
    async with admin_of(cluster, ADMIN) as admin:
        await granted(admin,
                      acl_binding("user:member", "read", "group", "team-g"),
                      acl_binding("user:member", "read", "topic", "orders"),
                      acl_binding("user:viewer", "describe", "group", "team-g"),
                      acl_binding("user:lead", "alter", "group", "team-g"))  # fmt: skip
    member = cluster.client_security("user:member")
    metadata = await _metadata(cluster, member)
    groups_address = metadata.group_manager.address
    async with member.channel(groups_address) as channel:
        stub = groups_pb2_grpc.GroupServiceStub(channel)
        joined = await stub.Heartbeat(groups_pb2.HeartbeatRequest(
            group_id="team-g", subscribed_topic_names=["orders"]), timeout=5)  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as rpc:  # read on the group, not the topic
            await stub.Heartbeat(groups_pb2.HeartbeatRequest(
                group_id="team-g", subscribed_topic_names=["payments"]), timeout=5)
        assert from_rpc_error(rpc.value).reason is Reason.PERMISSION_DENIED
    viewer = cluster.client_security("user:viewer")
    async with GroupAdmin(bootstrap(cluster), **viewer.kwargs) as groups:
        seen = await groups.describe("team-g")
        assert len(seen.members) == 1 and seen.members[0].member_id == ""
        assert not seen.members[0].HasField("member_epoch")
        for attempt in (groups.delete("team-g"), groups.reset_offsets(_reset("team-g"))):
            with refused():
                await attempt
        assert [g.group_id for g in await groups.list_groups()] == ["team-g"]
    lead = cluster.client_security("user:lead")
    async with GroupAdmin(bootstrap(cluster), **lead.kwargs) as groups:
        shown = await groups.describe("team-g")
        assert shown.members[0].member_id == joined.member_id
        assert shown.members[0].member_epoch == joined.member_epoch
    # The member's id alone does not make it leave: a leave needs its epoch.
    async with member.channel(groups_address) as channel:
        stub = groups_pb2_grpc.GroupServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as rpc:
            await stub.Heartbeat(groups_pb2.HeartbeatRequest(
                group_id="team-g", member_id=joined.member_id, member_epoch=-1), timeout=5)
        assert from_rpc_error(rpc.value).reason is Reason.FENCED_MEMBER_EPOCH
        await stub.Heartbeat(groups_pb2.HeartbeatRequest(
            group_id="team-g", member_id=joined.member_id, member_epoch=-1,
            current_member_epoch=joined.member_epoch), timeout=5)  # fmt: skip
    async with GroupAdmin(bootstrap(cluster), **lead.kwargs) as groups:
        assert list((await groups.describe("team-g")).members) == []
    denied = [x for x in audit_lines(cluster, "groups") if x["principal"] == "user:viewer"]
    assert {x["method"].rsplit("/", 1)[1] for x in denied} >= {"DeleteGroup", "ResetOffsets"}


def _reset(group_id: str) -> groups_pb2.ResetOffsetsRequest:
    return groups_pb2.ResetOffsetsRequest(
        group_id=group_id, partitions=[common_pb2.TopicPartitions(topic="orders")],
        to_earliest=True)  # fmt: skip


async def _metadata(cluster: LocalCluster, creds: ClientCredentials
                    ) -> metadata_pb2.GetMetadataResponse:  # fmt: skip
    async with creds.channel(bootstrap(cluster)) as channel:
        stub = metadata_pb2_grpc.MetadataServiceStub(channel)
        response: metadata_pb2.GetMetadataResponse = await stub.GetMetadata(
            metadata_pb2.GetMetadataRequest(), timeout=5)
        return response


_ = (Path, admin_pb2_grpc)  # imported for type names in helpers


async def test_a_revoked_acl_ends_an_open_subscribe_stream(
    cluster: LocalCluster, topics: list[str]
) -> None:
    """sam reads payments through a Subscribe stream; once his ACL is deleted, the next
    message of the stream is refused instead (PERMISSION_DENIED), without a restart."""
    sam = cluster.client_security("user:sam")
    async with admin_of(cluster, ADMIN) as admin:
        await granted(admin, acl_binding("user:sam", "read", "topic", "payments"))
        await produce(cluster, cluster.client_security(ADMIN), "payments", b"one")
        leader = leader_address(cluster, await admin.get_metadata(["payments"]), "payments")
        async with sam.channel(leader) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            stream = stub.Subscribe(storage_pb2.SubscribeRequest(partitions=[
                storage_pb2.FetchPartition(topic="payments", partition=0, fetch_offset=0)]),
                timeout=WAIT_S)  # fmt: skip
            first = await stream.read()
            assert first.partitions[0].batches  # type: ignore[union-attr]
            await admin.delete_acls([acl_filter(principal="user:sam")])

            async def node_refuses() -> bool:  # the watch brought the deletion to the node
                try:
                    await stub.Fetch(storage_pb2.FetchRequest(partitions=[
                        storage_pb2.FetchPartition(topic="payments", partition=0,
                                                   fetch_offset=0)]), timeout=5)
                except grpc.aio.AioRpcError as error:
                    return from_rpc_error(error).reason is Reason.PERMISSION_DENIED
                return False

            await eventually(node_refuses, timeout_s=ACL_PROPAGATION_S, what="sam refused")
            await produce(cluster, cluster.client_security(ADMIN), "payments", b"two")
            with pytest.raises(grpc.aio.AioRpcError) as rpc:
                async with asyncio.timeout(WAIT_S):
                    while True:
                        message = await stream.read()
                        assert message is not grpc.aio.EOF
            assert from_rpc_error(rpc.value).reason is Reason.PERMISSION_DENIED
