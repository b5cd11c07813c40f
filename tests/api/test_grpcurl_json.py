"""Zero values that mean something show in grpcurl's JSON (issue 10, trap 5).

proto3 leaves a scalar that equals zero out of JSON unless the field has explicit
presence, so partition 0, offset 0 and epoch 0 vanished from grpcurl's answers. The
fields where zero is meaningful are `optional` now. Through a real coordinator, a real
node and the real grpcurl: DescribeTopic shows partition 0 and leader epoch 0,
GetMetadata shows them too, and a group's ResetOffsets shows `newOffset: 0`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness.cluster import LocalCluster
from tests.harness.grpcurl import grpcurl_json
from tests.node.cluster_helpers import FAST_NODE_ARGS

pytestmark = pytest.mark.integration


def test_zero_partition_offset_and_epoch_show_in_json(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = local_cluster()
    cluster.add_coordinator()
    cluster.add_groups()
    cluster.add_node(1, args=FAST_NODE_ARGS)
    cluster.start()
    coordinator = cluster.address("coordinator")

    grpcurl_json(coordinator, "brook.v1.AdminService/CreateTopic", {
        "name": "zeros", "partitionCount": 2, "replicationFactor": 1, "waitForLeaders": True,
    })  # fmt: skip
    described = grpcurl_json(coordinator, "brook.v1.AdminService/DescribeTopic", {"name": "zeros"})
    first = described["topic"]["partitions"][0]
    assert first["partition"] == 0 and first["leaderEpoch"] == 0, first

    metadata = grpcurl_json(coordinator, "brook.v1.MetadataService/GetMetadata",
                            {"topics": ["zeros"]})  # fmt: skip
    assert metadata["topics"][0]["partitions"][0]["partition"] == 0

    reset = grpcurl_json(cluster.address("groups"), "brook.v1.GroupService/ResetOffsets", {
        "groupId": "zeros-group", "partitions": [{"topic": "zeros"}], "toEarliest": True,
    })  # fmt: skip
    changes = reset["changes"]
    assert changes and all(change["newOffset"] in (0, "0") for change in changes), reset
    assert any(change["partition"] == 0 for change in changes), reset
