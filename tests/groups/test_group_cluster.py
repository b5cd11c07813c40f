"""Integration on a real cluster (etcd, coordinator, storage node, two group managers):
consumer groups over real data. Runs plaintext and secure (`security_mode`: TLS + mTLS,
`--authorizer acl`, the clients as user:alice with read/write/create on the topic and
read on the group; tests/harness/secure.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brook.client.admin import Admin
from brook.client.cli import groups as cli_groups
from brook.client.groups import GroupConsumer
from brook.client.producer import Producer
from brook.client.records import ConsumerRecord
from brook.services.metadata import MetadataStore
from tests.harness.cluster import LocalCluster
from tests.harness.secure import client_acls, cluster_options, start_secured

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "orders"
GROUP = "billing"
PARTITIONS = 12
WAIT_S = 30.0
# The client's ACLs in the secure variant: exactly what the test's calls need.
CLIENT_ACLS = client_acls(topics=[TOPIC], groups=[GROUP])


@pytest.fixture
def cluster(
    local_cluster: Callable[..., LocalCluster], security_mode: str
) -> Iterator[LocalCluster]:
    cluster = local_cluster(**cluster_options(security_mode))
    cluster.add_coordinator()
    cluster.add_node(1)
    for name in ("groups-a", "groups-b"):
        cluster.add_groups(name, ["--lease-ttl-s", "2", "--heartbeat-interval-ms", "200"])
    start_secured(cluster, CLIENT_ACLS)
    yield cluster


async def produce(bootstrap: str, start: int, count: int) -> None:
    async with Producer(bootstrap, linger_ms=2) as producer:
        failed: list[BaseException] = []
        producer.add_batch_listener(
            lambda result: failed.append(result.error) if result.error is not None else None
        )
        for index in range(start, start + count):
            producer.send_nowait(TOPIC, value=f"v{index}".encode(), key=f"k{index}".encode())
        await producer.flush()
    assert not failed, f"produce failed: {failed[0]!r}"


async def active_manager(cluster: LocalCluster) -> str:
    store = MetadataStore(cluster.etcd, cluster_name=cluster.cluster_name)
    await store.connect()
    try:
        holder = await store.get_role_holder("groups")
        assert holder is not None
        return next(n for n, m in cluster.processes.items() if m.address == holder.address)
    finally:
        await store.close()


async def test_group_consumes_every_record_once_across_manager_failover(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Three GroupConsumers share a 12-partition topic of real records: every record is
    consumed exactly once (revocations commit before a partition moves, so handoffs
    repeat nothing), also across a kill -9 of the active group manager (members continue
    with the standby, no rebalance). After close, the committed offsets equal the log end
    offsets: `brook group describe` shows lag 0 everywhere and a new member reads
    nothing."""
    bootstrap = cluster.address("coordinator")
    async with Admin(bootstrap) as admin:
        await admin.create_topic(TOPIC, PARTITIONS, 1, {})
    await produce(bootstrap, 0, 1200)
    seen: list[ConsumerRecord] = []
    members = [
        GroupConsumer(
            bootstrap,
            GROUP,
            topics=[TOPIC],
            auto_offset_reset="earliest",
            auto_commit_interval_ms=200,
            session_timeout_ms=10_000,
        )
        for _ in range(3)
    ]
    stop = asyncio.Event()

    async def consume(member: GroupConsumer) -> None:
        while not stop.is_set():
            seen.extend(await member.poll(timeout_ms=200))

    def state() -> str:
        """What the members hold, for a failure message."""
        parts = [f"seen={len(seen)}"]
        for index, member in enumerate(members):
            owned = sorted(tp.partition for tp in member.assignment())
            parts.append(f"member{index}(epoch={member.member_epoch}, owns={owned})")
        return " ".join(parts)

    async def wait_for(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {state()}"
            await asyncio.sleep(0.05)  # polling a condition with a bounded deadline

    tasks: list[asyncio.Task[None]] = []
    try:
        for member in members:
            await member.start()
            tasks.append(asyncio.ensure_future(consume(member)))
        await wait_for(lambda: len(seen) >= 1200, "the first 1200 records")
        await wait_for(
            lambda: sorted(len(m.assignment()) for m in members) == [4, 4, 4], "4 partitions each"
        )
        epochs = [m.member_epoch for m in members]
        cluster.kill(await active_manager(cluster), signal.SIGKILL)
        await produce(bootstrap, 1200, 600)
        await wait_for(lambda: len(seen) >= 1800, "all 1800 records after the fail-over")
        assert [m.member_epoch for m in members] == epochs, "a rebalance happened"
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for member in members:
            await member.close()
    keys = [(r.partition, r.offset) for r in seen]
    assert len(keys) == len(set(keys)) == 1800, "a record was consumed twice or lost"
    assert {r.value for r in seen} == {f"v{i}".encode() for i in range(1800)}

    out = io.StringIO()
    await cli_groups.cmd_describe(
        argparse.Namespace(bootstrap=bootstrap, group=GROUP, watch=False), out
    )
    rows = re.findall(rf"^{TOPIC}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out.getvalue(), re.M)
    assert len(rows) == PARTITIONS, out.getvalue()
    assert all(committed == end and lag == "0" for _, committed, end, lag in rows), rows
    assert sum(int(end) for _, _, end, _ in rows) == 1800

    async with GroupConsumer(
        bootstrap, GROUP, topics=[TOPIC], auto_offset_reset="earliest"
    ) as late:
        deadline = time.monotonic() + WAIT_S
        while len(late.assignment()) < PARTITIONS:
            assert await late.poll(timeout_ms=200) == []
            assert time.monotonic() < deadline, "the late member never got the partitions"
        assert await late.poll(timeout_ms=500) == []
