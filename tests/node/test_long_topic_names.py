"""Defect 7: deleting a topic with a valid 249-character name broke the node: the
`.deleting` rename failed with ENAMETOOLONG, the reconcile loop then failed every second
for all topics, and after a restart the node never rejoined. Real processes: a
coordinator and one node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from brook.client.admin import Admin
from brook.errors import from_partition_error
from brook.v1 import storage_pb2
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually
from tests.node.cluster_helpers import FAST_NODE_ARGS, NodeClient
from tests.node.helpers import make_batch

pytestmark = pytest.mark.integration

LONG = "t" * 249  # the longest valid topic name
OTHER = "other"


async def produce_ok(client: NodeClient, topic: str, value: bytes) -> bool:
    answer = await client.produce(topic, 0, [make_batch([value])], acks=storage_pb2.ACKS_LEADER)
    return from_partition_error(answer.error) is None


def local_logs(data_dir: Path) -> list[str]:
    logs = data_dir / "logs"
    return sorted(path.name for path in logs.iterdir()) if logs.is_dir() else []


async def test_topic_with_249_character_name_deletes_and_node_restarts(
    local_cluster: Callable[..., LocalCluster], admins: Callable[[str], Admin]
) -> None:
    """Create a 249-character topic and another one, produce to both, delete the long
    one: its directory goes (the `.deleting` name fits 255 bytes), reconcile never
    fails, the other topic stays online; after a restart the node registers again and
    still serves the other topic."""
    cluster = local_cluster()
    cluster.add_coordinator(args=["--lease-ttl-s", "2"])
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.start()
    admin = admins(cluster.address("coordinator"))
    await admin.create_topic(LONG, 2, 1, {})
    await admin.create_topic(OTHER, 1, 1, {})
    node = NodeClient(cluster.address("node-1"))
    try:
        for topic in (LONG, OTHER):
            await eventually(
                lambda topic=topic: produce_ok(node, topic, b"before"),
                timeout_s=15,
                what=f"a produce to {topic[:10]}",
            )
        data_dir = cluster.base_dir / "node-1-data"
        assert f"{LONG}-1" in local_logs(data_dir)
        await admin.delete_topic(LONG)

        async def long_topic_gone() -> bool:
            return not any(name.startswith(LONG[:200]) for name in local_logs(data_dir))

        await eventually(long_topic_gone, timeout_s=15, what="the long topic's logs to go")
        assert await produce_ok(node, OTHER, b"after delete")
    finally:
        await node.close()
    cluster.restart("node-1")
    node = NodeClient(cluster.address("node-1"))
    try:
        await eventually(
            lambda: produce_ok(node, OTHER, b"after restart"),
            timeout_s=15,
            what="the other topic online after the restart",
        )
        assert await node.read_all(OTHER, 0) == [b"before", b"after delete", b"after restart"]
    finally:
        await node.close()
    log_text = cluster.processes["node-1"].log_path.read_text(errors="replace")
    assert "ENAMETOOLONG" not in log_text and "File name too long" not in log_text
    assert "reconcile failed" not in log_text and "deleting the local log failed" not in log_text
