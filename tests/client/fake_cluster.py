"""A fake Brook cluster for client tests: real gRPC servers on 127.0.0.1:0, fake brains.

Each fake node is a `grpc.aio` server serving StorageService; node 0's server also serves
MetadataService and AdminService (the "coordinator"). Partitions live in memory as lists
of stored RecordBatch bytes with offsets assigned like a real leader (base_offset = log
end offset), and the shapes of requests and answers are the real protobufs, so the client
under test talks real gRPC to it. Tests script failures:

- `fail_produce(topic, partition, reason, times)`: the next `times` Produce answers for
  that partition carry a PartitionError with `reason`;
- `fail_calls(method, code, times)`: the next calls of a method fail as a whole with a
  gRPC status (transport-like failures);
- `move_leader(topic, partition, node_id)`: leadership moves and the epoch is bumped;
  the old leader answers NOT_LEADER until the client refreshes metadata;
- `produce_gate`: an asyncio.Event that, while cleared, holds Produce calls (to test
  back-pressure and in-flight limits).

Tests must call `await cluster.stop()` (the fixture does it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field

import crc32c
import grpc

from brook.errors import BrookError
from brook.services.common.rpc import handle_errors
from brook.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    metadata_pb2,
    metadata_pb2_grpc,
    records_pb2,
    storage_pb2,
    storage_pb2_grpc,
)


@dataclass
class FakePartition:
    topic: str
    partition: int
    leader: int
    epoch: int = 0
    replicas: list[int] = field(default_factory=list)
    # (base offset, record count, stored RecordBatch bytes, max timestamp)
    batches: list[tuple[int, int, bytes, int]] = field(default_factory=list)
    log_start_offset: int = 0
    log_end_offset: int = 0
    appended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FakeTopic:
    name: str
    topic_id: str
    replication_factor: int
    configs: dict[str, str]
    partitions: list[FakePartition]


class FakeState:
    """Everything the fake nodes and coordinator share."""

    def __init__(self) -> None:
        self.topics: dict[str, FakeTopic] = {}
        self.node_addresses: dict[int, str] = {}
        self.revision = 1
        self.produce_failures: dict[tuple[str, int], deque[str]] = defaultdict(deque)
        self.call_failures: dict[str, deque[grpc.StatusCode]] = defaultdict(deque)
        self.produce_gate = asyncio.Event()
        self.produce_gate.set()
        self.produce_requests: list[storage_pb2.ProduceRequest] = []
        self.fetch_requests: list[storage_pb2.FetchRequest] = []
        self.metadata_calls = 0
        self.admin_calls: list[str] = []
        self.in_flight_produce = 0
        self.max_in_flight_produce = 0

    def create_topic(
        self, name: str, partitions: int, replication_factor: int = 1, configs: dict | None = None
    ) -> FakeTopic:
        if name in self.topics:
            raise BrookError("TOPIC_ALREADY_EXISTS", f"topic {name!r} already exists")
        nodes = sorted(self.node_addresses)
        topic = FakeTopic(
            name,
            uuid.uuid4().hex,
            replication_factor,
            dict(configs or {}),
            [
                FakePartition(name, p, nodes[p % len(nodes)], 0, [nodes[p % len(nodes)]])
                for p in range(partitions)
            ],
        )
        self.topics[name] = topic
        self.revision += 1
        return topic

    def partition(self, topic: str, partition: int) -> FakePartition:
        found = self.topics.get(topic)
        if found is None:
            raise BrookError("TOPIC_NOT_FOUND", f"topic {topic!r} does not exist")
        if not 0 <= partition < len(found.partitions):
            raise BrookError("PARTITION_NOT_FOUND", f"no partition {partition} in {topic}")
        return found.partitions[partition]

    def take_call_failure(self, method: str) -> grpc.StatusCode | None:
        queue = self.call_failures.get(method)
        return queue.popleft() if queue else None

    def records(self, topic: str, partition: int) -> list[records_pb2.Record]:
        """Every stored record of a partition, decoded (for assertions)."""
        from brook import codec

        out = []
        for _base, _count, data, _ts in self.partition(topic, partition).batches:
            batch = records_pb2.RecordBatch.FromString(data)
            out.extend(codec.decode_batch(batch, topic, partition))
        return out


class FakeStorage(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, state: FakeState, node_id: int) -> None:
        self.state = state
        self.node_id = node_id

    async def _maybe_fail(self, method: str, context: grpc.aio.ServicerContext) -> None:
        code = self.state.take_call_failure(method)
        if code is not None:
            await context.abort(code, f"scripted {code.name}")

    def _check_leader(self, part: FakePartition, epoch: int) -> None:
        if part.leader != self.node_id:
            raise BrookError(
                "NOT_LEADER",
                f"node {self.node_id} does not lead {part.topic}-{part.partition}",
                {"leader_id": part.leader},
            )
        if epoch >= 0 and epoch < part.epoch:
            raise BrookError("FENCED_LEADER_EPOCH", f"epoch {epoch} < {part.epoch}")
        if epoch > part.epoch:
            raise BrookError("UNKNOWN_LEADER_EPOCH", f"epoch {epoch} > {part.epoch}")

    @handle_errors
    async def Produce(
        self, request: storage_pb2.ProduceRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ProduceResponse:
        await self._maybe_fail("Produce", context)
        state = self.state
        state.produce_requests.append(request)
        state.in_flight_produce += 1
        state.max_in_flight_produce = max(state.max_in_flight_produce, state.in_flight_produce)
        try:
            await state.produce_gate.wait()
            response = storage_pb2.ProduceResponse()
            for item in request.partitions:
                answer = response.partitions.add(topic=item.topic, partition=item.partition)
                try:
                    part = state.partition(item.topic, item.partition)
                    self._check_leader(part, item.current_leader_epoch)
                    scripted = state.produce_failures.get((item.topic, item.partition))
                    if scripted:
                        reason = scripted.popleft()
                        raise BrookError(reason, f"scripted {reason}")
                    base = part.log_end_offset
                    for batch in item.batches:
                        if crc32c.crc32c(batch.records) != batch.crc32c:
                            raise BrookError("CORRUPT_BATCH", "crc32c mismatch")
                        if batch.record_count < 1:
                            raise BrookError("CORRUPT_BATCH", "empty batch")
                    for batch in item.batches:
                        stored = records_pb2.RecordBatch()
                        stored.CopyFrom(batch)
                        stored.base_offset = part.log_end_offset
                        stored.partition_leader_epoch = part.epoch
                        part.batches.append(
                            (
                                part.log_end_offset,
                                batch.record_count,
                                stored.SerializeToString(),
                                batch.max_timestamp_ms,
                            )
                        )
                        part.log_end_offset += batch.record_count
                    answer.base_offset = base
                    answer.last_offset = part.log_end_offset - 1
                    part.appended.set()
                    part.appended = asyncio.Event()
                except BrookError as error:
                    answer.error.CopyFrom(error.to_partition_error())
            return response
        finally:
            state.in_flight_produce -= 1

    @handle_errors
    async def Fetch(
        self, request: storage_pb2.FetchRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.FetchResponse:
        await self._maybe_fail("Fetch", context)
        self.state.fetch_requests.append(request)
        deadline = asyncio.get_running_loop().time() + request.max_wait_ms / 1000
        while True:
            response, total, events = self._read(request)
            remaining = deadline - asyncio.get_running_loop().time()
            if total >= max(request.min_bytes, 1) or remaining <= 0 or not events:
                return response
            waiters = [asyncio.ensure_future(e.wait()) for e in events]
            _done, pending = await asyncio.wait(
                waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()

    def _read(
        self, request: storage_pb2.FetchRequest
    ) -> tuple[storage_pb2.FetchResponse, int, list[asyncio.Event]]:
        response = storage_pb2.FetchResponse()
        total = 0
        events = []
        for item in request.partitions:
            answer = response.partitions.add(topic=item.topic, partition=item.partition)
            try:
                part = self.state.partition(item.topic, item.partition)
                self._check_leader(part, item.current_leader_epoch)
                answer.high_watermark = part.log_end_offset
                answer.log_start_offset = part.log_start_offset
                if not part.log_start_offset <= item.fetch_offset <= part.log_end_offset:
                    raise BrookError(
                        "OFFSET_OUT_OF_RANGE",
                        f"offset {item.fetch_offset} not in"
                        f" [{part.log_start_offset}, {part.log_end_offset}]",
                        {
                            "log_start_offset": part.log_start_offset,
                            "log_end_offset": part.log_end_offset,
                        },
                    )
                limit = item.partition_max_bytes or (1 << 20)
                taken = 0
                for base, count, data, _ts in part.batches:
                    if base + count <= item.fetch_offset or base < part.log_start_offset:
                        continue
                    too_big = taken + len(data) > limit or total + len(data) > request.max_bytes
                    if taken and too_big:
                        break
                    answer.batches.append(records_pb2.RecordBatch.FromString(data))
                    taken += len(data)
                    total += len(data)
                if not taken:
                    events.append(part.appended)
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
                total += 1  # answer errors at once
        return response, total, events

    @handle_errors
    async def ListOffsets(
        self, request: storage_pb2.ListOffsetsRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ListOffsetsResponse:
        await self._maybe_fail("ListOffsets", context)
        response = storage_pb2.ListOffsetsResponse()
        for item in request.partitions:
            answer = response.partitions.add(topic=item.topic, partition=item.partition)
            answer.timestamp_ms = -1
            try:
                part = self.state.partition(item.topic, item.partition)
                self._check_leader(part, item.current_leader_epoch)
                answer.leader_epoch = part.epoch
                if item.query == storage_pb2.OFFSET_QUERY_EARLIEST:
                    answer.offset = part.log_start_offset
                elif item.query == storage_pb2.OFFSET_QUERY_LATEST:
                    answer.offset = part.log_end_offset
                else:
                    answer.offset = part.log_end_offset
                    for base, _count, _data, max_ts in part.batches:
                        if max_ts >= item.timestamp_ms:
                            answer.offset = max(base, part.log_start_offset)
                            answer.timestamp_ms = max_ts
                            break
            except BrookError as error:
                answer.error.CopyFrom(error.to_partition_error())
        return response


class FakeMetadata(metadata_pb2_grpc.MetadataServiceServicer):
    def __init__(self, state: FakeState, coordinator_address: str) -> None:
        self.state = state
        self.coordinator_address = coordinator_address

    @handle_errors
    async def GetMetadata(
        self, request: metadata_pb2.GetMetadataRequest, context: grpc.aio.ServicerContext
    ) -> metadata_pb2.GetMetadataResponse:
        state = self.state
        state.metadata_calls += 1
        if (code := state.take_call_failure("GetMetadata")) is not None:
            await context.abort(code, f"scripted {code.name}")
        response = metadata_pb2.GetMetadataResponse(
            cluster_id="fake-cluster",
            metadata_revision=state.revision,
            coordinator=common_pb2.Endpoint(id="coord", address=self.coordinator_address),
        )
        for node_id, address in sorted(state.node_addresses.items()):
            response.nodes.add(node_id=node_id, address=address)
        names = list(request.topics) or sorted(state.topics)
        for name in names:
            entry = response.topics.add(name=name)
            topic = state.topics.get(name)
            if topic is None:
                entry.error.CopyFrom(
                    BrookError("TOPIC_NOT_FOUND", f"no topic {name}").to_partition_error()
                )
                continue
            entry.topic_id = topic.topic_id
            for part in topic.partitions:
                entry.partitions.add(
                    partition=part.partition,
                    leader_id=part.leader,
                    leader_epoch=part.epoch,
                    replica_ids=part.replicas,
                    isr_ids=part.replicas,
                )
        return response


class FakeAdmin(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, state: FakeState, *, standby_of: str | None = None) -> None:
        self.state = state
        self.standby_of = standby_of

    def _check_active(self, name: str) -> None:
        self.state.admin_calls.append(name)
        if self.standby_of is not None:
            raise BrookError(
                "NOT_COORDINATOR",
                "this coordinator is a standby",
                {"coordinator_address": self.standby_of},
            )

    def _describe(self, topic: FakeTopic) -> admin_pb2.TopicDescription:
        return admin_pb2.TopicDescription(
            name=topic.name,
            topic_id=topic.topic_id,
            partition_count=len(topic.partitions),
            replication_factor=topic.replication_factor,
            configs=topic.configs,
            partitions=[
                common_pb2.PartitionState(
                    partition=p.partition,
                    leader_id=p.leader,
                    leader_epoch=p.epoch,
                    replica_ids=p.replicas,
                    isr_ids=p.replicas,
                )
                for p in topic.partitions
            ],
        )

    @handle_errors
    async def CreateTopic(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("CreateTopic")
        if request.partition_count < 1:
            raise BrookError("INVALID_PARTITION_COUNT", "partition_count must be at least 1")
        topic = self.state.create_topic(
            request.name,
            request.partition_count,
            request.replication_factor or 1,
            dict(request.configs),
        )
        return admin_pb2.CreateTopicResponse(topic=self._describe(topic))

    @handle_errors
    async def DeleteTopic(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("DeleteTopic")
        topic = self.state.topics.pop(request.name, None)
        if topic is None:
            raise BrookError("TOPIC_NOT_FOUND", f"topic {request.name!r} does not exist")
        self.state.revision += 1
        return admin_pb2.DeleteTopicResponse(topic_id=topic.topic_id)

    @handle_errors
    async def ListTopics(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("ListTopics")
        names = sorted(self.state.topics)
        start = int(request.page_token or 0)
        size = request.page_size or 100
        page = names[start : start + size]
        token = str(start + size) if start + size < len(names) else ""
        return admin_pb2.ListTopicsResponse(
            topics=[
                admin_pb2.TopicSummary(
                    name=n,
                    topic_id=self.state.topics[n].topic_id,
                    partition_count=len(self.state.topics[n].partitions),
                    replication_factor=self.state.topics[n].replication_factor,
                )
                for n in page
            ],
            next_page_token=token,
        )

    @handle_errors
    async def DescribeTopic(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("DescribeTopic")
        topic = self.state.topics.get(request.name)
        if topic is None:
            raise BrookError("TOPIC_NOT_FOUND", f"topic {request.name!r} does not exist")
        return admin_pb2.DescribeTopicResponse(topic=self._describe(topic))

    @handle_errors
    async def DescribeCluster(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("DescribeCluster")
        response = admin_pb2.DescribeClusterResponse(
            cluster_id="fake-cluster",
            coordinator=common_pb2.Endpoint(id="coord", address=self.state.node_addresses[0]),
            topic_count=len(self.state.topics),
            partition_count=sum(len(t.partitions) for t in self.state.topics.values()),
        )
        for node_id, address in sorted(self.state.node_addresses.items()):
            response.nodes.add(
                node=common_pb2.Node(node_id=node_id, address=address),
                replica_count=1,
                leader_count=1,
            )
        response.under_replicated_partitions.add(topic="t", partition=0)
        return response

    @handle_errors
    async def DescribeConfigs(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("DescribeConfigs")
        topic = self.state.topics.get(request.topic)
        if topic is None:
            raise BrookError("TOPIC_NOT_FOUND", f"topic {request.topic!r} does not exist")
        entries = [
            admin_pb2.ConfigEntry(
                name="retention_ms",
                value=topic.configs.get("retention_ms", "604800000"),
                source=admin_pb2.CONFIG_SOURCE_TOPIC
                if "retention_ms" in topic.configs
                else admin_pb2.CONFIG_SOURCE_DEFAULT,
                default_value="604800000",
            )
        ]
        return admin_pb2.DescribeConfigsResponse(configs=entries)

    @handle_errors
    async def AlterConfigs(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("AlterConfigs")
        topic = self.state.topics[request.topic]
        topic.configs.update(request.set)
        for key in request.delete:
            topic.configs.pop(key, None)
        return admin_pb2.AlterConfigsResponse()

    @handle_errors
    async def CreatePartitions(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("CreatePartitions")
        topic = self.state.topics[request.topic]
        nodes = sorted(self.state.node_addresses)
        for p in range(len(topic.partitions), request.partition_count):
            leader = nodes[p % len(nodes)]
            topic.partitions.append(FakePartition(topic.name, p, leader, 0, [leader]))
        self.state.revision += 1
        return admin_pb2.CreatePartitionsResponse(topic=self._describe(topic))

    @handle_errors
    async def ElectLeaders(self, request, context):  # type: ignore[no-untyped-def]
        self._check_active("ElectLeaders")
        response = admin_pb2.ElectLeadersResponse()
        for ref in request.partitions:
            response.results.add(
                topic=ref.topic,
                partition=ref.partition,
                error=BrookError("ELECTION_NOT_NEEDED", "already leads").to_partition_error(),
            )
        return response


class FakeCluster:
    """N fake nodes; node 0 also hosts the metadata and admin services."""

    def __init__(self, nodes: int = 1) -> None:
        self.state = FakeState()
        self.node_count = nodes
        self.servers: dict[int, grpc.aio.Server] = {}
        self.standby: grpc.aio.Server | None = None
        self.standby_address = ""

    @property
    def bootstrap(self) -> str:
        return self.state.node_addresses[0]

    async def start(self) -> FakeCluster:
        for node_id in range(self.node_count):
            server = grpc.aio.server(
                options=[
                    ("grpc.max_receive_message_length", 64 << 20),
                    ("grpc.max_send_message_length", 64 << 20),
                ]
            )
            port = server.add_insecure_port("127.0.0.1:0")
            address = f"127.0.0.1:{port}"
            self.state.node_addresses[node_id] = address
            # The fakes implement only the RPCs the client uses (mypy sees the rest of the
            # generated servicer as abstract).
            storage_pb2_grpc.add_StorageServiceServicer_to_server(
                FakeStorage(self.state, node_id),  # type: ignore[abstract]
                server,
            )
            if node_id == 0:
                metadata_pb2_grpc.add_MetadataServiceServicer_to_server(
                    FakeMetadata(self.state, address), server
                )
                admin_pb2_grpc.add_AdminServiceServicer_to_server(
                    FakeAdmin(self.state),  # type: ignore[abstract]
                    server,
                )
            await server.start()
            self.servers[node_id] = server
        return self

    async def start_standby(self) -> str:
        """A standby coordinator: metadata works, admin calls answer NOT_COORDINATOR."""
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        self.standby_address = f"127.0.0.1:{port}"
        metadata_pb2_grpc.add_MetadataServiceServicer_to_server(
            FakeMetadata(self.state, self.bootstrap), server
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            FakeAdmin(self.state, standby_of=self.bootstrap),  # type: ignore[abstract]
            server,
        )
        await server.start()
        self.standby = server
        return self.standby_address

    def create_topic(self, name: str, partitions: int = 1, **kwargs: object) -> FakeTopic:
        return self.state.create_topic(name, partitions, **kwargs)  # type: ignore[arg-type]

    def fail_produce(self, topic: str, partition: int, reason: str, times: int = 1) -> None:
        self.state.produce_failures[(topic, partition)].extend([reason] * times)

    def fail_calls(self, method: str, code: grpc.StatusCode, times: int = 1) -> None:
        self.state.call_failures[method].extend([code] * times)

    def move_leader(self, topic: str, partition: int, node_id: int) -> None:
        part = self.state.partition(topic, partition)
        part.leader = node_id
        part.epoch += 1
        part.replicas = [node_id]
        self.state.revision += 1

    async def stop(self) -> None:
        for server in [*self.servers.values(), *([self.standby] if self.standby else [])]:
            await server.stop(None)
