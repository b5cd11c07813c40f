"""A secure cluster of real processes (coordinator, storage nodes) on loopback: TLS on
every listener, mTLS between nodes (node certificates, principal node:<id>), the Python
client with its own certificate, refusals, and certificate rotation without a restart."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

import grpc
import pytest
from cryptography import x509

from brook.client import Admin, Consumer, Producer
from brook.client.records import TopicPartition
from brook.errors import Reason, from_rpc_error
from brook.services.common.certs import CertAuthority
from brook.transport import ChannelSecurity
from brook.v1 import storage_pb2, storage_pb2_grpc
from tests.harness.cluster import ClientCredentials, LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = pytest.mark.integration

WAIT_S = 30.0


def start_secure(local_cluster: Callable[..., LocalCluster], nodes: int) -> LocalCluster:
    cluster = local_cluster(secure=True)
    cluster.add_coordinator()
    for node_id in range(1, nodes + 1):
        cluster.add_node(node_id, args=FAST_NODE_ARGS)
    cluster.start()
    return cluster


async def wait_for_nodes(admin: Admin, count: int) -> None:
    async def registered() -> bool:
        return len((await admin.describe_cluster()).nodes) >= count

    await eventually(registered, timeout_s=WAIT_S, what=f"{count} nodes registered")


async def produce(
    bootstrap: str, creds: ClientCredentials, topic: str, values: list[bytes]
) -> None:
    async with Producer(bootstrap, acks="all", linger_ms=1, **creds.kwargs) as producer:
        futures = [await producer.send(topic, value, partition=0) for value in values]
        await asyncio.wait_for(producer.flush(), WAIT_S)
    for future in futures:
        future.result()


async def consume(bootstrap: str, creds: ClientCredentials, topic: str, count: int) -> list[bytes]:
    values: list[bytes] = []
    async with Consumer(bootstrap, auto_offset_reset="earliest", **creds.kwargs) as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        async with asyncio.timeout(WAIT_S):
            while len(values) < count:
                values.extend(r.value for r in await consumer.poll(timeout_ms=500))
    return values


async def list_offsets(security: ChannelSecurity, address: str) -> storage_pb2.ListOffsetsResponse:
    async with security.channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        request = storage_pb2.ListOffsetsRequest(
            partitions=[
                storage_pb2.ListOffsetsPartition(
                    topic="secure", partition=0, query=storage_pb2.OFFSET_QUERY_LATEST
                )
            ]
        )
        response: storage_pb2.ListOffsetsResponse = await stub.ListOffsets(request, timeout=5)
        return response


def served_serial(address: str, creds: ClientCredentials) -> int:
    """The serial of the certificate a new TLS connection to `address` is served."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=creds.tls_ca)
    assert creds.tls_cert and creds.tls_key
    context.load_cert_chain(creds.tls_cert, creds.tls_key)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_secure_cluster_serves_clients_and_replicates_over_mtls(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """Produce (acks=all, RF 2: the follower fetches over mTLS with its node certificate)
    and consume through the Python client with a user certificate; plaintext, no client
    certificate and another CA's certificate are refused at the TLS handshake."""
    cluster = start_secure(local_cluster, nodes=2)
    bootstrap = cluster.address("coordinator")
    alice = cluster.client_security("user:alice")
    async with Admin(bootstrap, **alice.kwargs) as admin:
        await wait_for_nodes(admin, 2)
        await admin.create_topic("secure", 1, 2, wait_for_leaders=True, timeout_ms=20_000)
        values = [b"record-%d" % i for i in range(200)]
        await produce(bootstrap, alice, "secure", values)
        described = await admin.describe_topic("secure")
        assert sorted(described.partitions[0].isr_ids) == [1, 2]
    assert await consume(bootstrap, alice, "secure", len(values)) == values

    # Refused before Brook sees the call (TLS handshake failures, no ErrorInfo).
    other_ca = CertAuthority.create("another CA")
    cert, key = other_ca.issue("alice", server=False).write(cluster.tls_dir, "mallory")
    refused = {
        "plaintext": ChannelSecurity.plaintext(),
        "no client certificate": ChannelSecurity(ca_file=alice.tls_ca),
        "another CA": ChannelSecurity(ca_file=alice.tls_ca, cert_file=str(cert), key_file=str(key)),
    }
    for address in (cluster.address("node-1"), bootstrap):
        for what, security in refused.items():
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await list_offsets(security, address)
            assert failure.value.code() is grpc.StatusCode.UNAVAILABLE, what
            assert from_rpc_error(failure.value).reason is Reason.TRANSPORT, what
    # The right certificate gets an answer from the same node.
    answer = await list_offsets(alice.security, cluster.address("node-1"))
    assert answer.partitions[0].offset == len(values)


async def test_rotated_certificate_serves_new_connections_without_restart(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """Replacing node-2's certificate and key files (a new pair, new serial) is picked up
    by new connections; the node keeps replicating and serving (same pid)."""
    cluster = start_secure(local_cluster, nodes=2)
    bootstrap = cluster.address("coordinator")
    alice = cluster.client_security("user:alice")
    node = cluster.address("node-2")
    pid = cluster.pid("node-2")
    before = await asyncio.to_thread(served_serial, node, alice)
    async with Admin(bootstrap, **alice.kwargs) as admin:
        await wait_for_nodes(admin, 2)
        await admin.create_topic(
            "secure", 1, 2, wait_for_leaders=True, timeout_ms=20_000,
            replica_assignments={0: [1, 2]},
        )  # fmt: skip
        await produce(bootstrap, alice, "secure", [b"before"])

        new_serial = cluster.rotate("node-2")
        assert new_serial != before

        async def rotated() -> bool:
            return await asyncio.to_thread(served_serial, node, alice) == new_serial

        await eventually(rotated, timeout_s=10, what="node-2 serving the new certificate")
        # Still one cluster: node-2 (same process) keeps replicating, acks=all succeeds,
        # and a fresh client connection to it is served.
        await produce(bootstrap, alice, "secure", [b"after"])
        assert cluster.pid("node-2") == pid
        described = await admin.describe_topic("secure")
        assert sorted(described.partitions[0].isr_ids) == [1, 2]
    with pytest.raises(grpc.aio.AioRpcError) as answered:  # a follower: NOT_LEADER, served
        await list_offsets(alice.security, node)
    assert from_rpc_error(answered.value).reason is Reason.NOT_LEADER
    assert await consume(bootstrap, alice, "secure", 2) == [b"before", b"after"]
    assert "server certificate reloaded" in cluster.log_tail("node-2", 200)


async def test_record_api_forwards_to_the_leader_over_mtls(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """RecordService on a node that does not lead the partition forwards the batch to the
    leader over mTLS (its node certificate), and reads it back the same way."""
    from brook.v1 import record_service_pb2, record_service_pb2_grpc

    cluster = start_secure(local_cluster, 2)
    creds = cluster.client_security("user:alice")
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap, **creds.kwargs) as admin:
        await wait_for_nodes(admin, 2)
        await admin.create_topic("forwarded", partitions=1, replication_factor=1,
                                 wait_for_leaders=True)
        leader = (await admin.describe_topic("forwarded")).partitions[0].leader_id
    other = cluster.address(f"node-{2 if leader == 1 else 1}")
    async with creds.channel(other) as channel:
        stub = record_service_pb2_grpc.RecordServiceStub(channel)
        produced = await stub.ProduceRecords(
            record_service_pb2.ProduceRecordsRequest(
                topic="forwarded",
                records=[record_service_pb2.PlainRecord(key_text="k", value_text="over tls")],
            ),
            timeout=WAIT_S,
        )
        assert produced.results[0].offset == 0, produced
        read = await stub.ReadRecords(
            record_service_pb2.ReadRecordsRequest(topic="forwarded", offset=0, as_text=True),
            timeout=WAIT_S,
        )
        assert [r.value_text for r in read.records] == ["over tls"]


async def test_a_plaintext_health_listener_serves_health_only(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """--health-listen: Kubernetes' native grpc probe speaks plaintext, so a TLS node can
    serve grpc.health.v1 (and nothing else) on a second, plaintext port."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.harness.ports import free_port

    health_address = f"127.0.0.1:{free_port()}"
    cluster = local_cluster(secure=True)
    cluster.add_coordinator()
    cluster.add_node(1, args=[*FAST_NODE_ARGS, "--health-listen", health_address])
    cluster.start()
    async with grpc.aio.insecure_channel(health_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

        await eventually(serving, timeout_s=WAIT_S, what="the health listener serving")
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListOffsets(storage_pb2.ListOffsetsRequest(), timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
