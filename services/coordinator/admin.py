"""AdminService: topic and config management, served by the active coordinator.

A thin shell: validate (`validation.py`, `configs.py`), authorize (`Authorizer`: the
operations table in `brook.services.common.authz.table`), decide (`placement.py`,
`election.py`), write to etcd with a compare-and-swap (`MetadataStore`), answer from the
records (`views.py`). Reads come from the watch-fed cache; after a write the servicer
waits (bounded) until its own cache shows it, so a client reads its own writes from this
coordinator. Mutations are serialized by one lock so two concurrent requests cannot
interleave their read-decide-write steps.

A standby coordinator answers every Admin call with NOT_COORDINATOR, whose metadata
carries the active coordinator's address (`coordinator_address`, `coordinator_id`).

The ACL calls (CreateAcls, DescribeAcls, DeleteAcls) are `acls.AclAdmin`'s; the quota
calls (AlterClientQuotas, DescribeClientQuotas) are `quotas.QuotaAdmin`'s.

Reassignment as a long-running operation (issue 13): the replication throttle's rates
live in etcd (services/metadata/replication_throttle.py; AlterReplicationThrottle,
DescribeReplicationThrottle, and the throttle_bytes_per_second of ReassignPartitions and
RebalancePartitions), read and written here directly (admin calls, not a data path;
the nodes enforce them from their watch). ListReassignments is paged and reports each
adding replica's progress from the nodes' DescribeLogDirs (reassign_progress.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping

import grpc

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason
from brook.services.common.authz import ALLOW_ALL, Authorizer
from brook.services.common.authz.model import CLUSTER, Operation
from brook.services.common.bounds import (
    check_count,
    check_each_chars,
    check_enum,
    check_range,
    quote,
)
from brook.services.common.rpc import handle_errors
from brook.services.coordinator import (
    balance,
    election,
    placement,
    reassignment,
    validation,
    views,
)
from brook.services.coordinator.acls import AclAdmin
from brook.services.coordinator.balance_driver import BalanceDriver
from brook.services.coordinator.controller import Controller
from brook.services.coordinator.leader_probe import wait_for_leaders
from brook.services.coordinator.limits import (
    CACHE_CATCH_UP_S_MAX,
    CONFIG_ENTRIES_PER_REQUEST_MAX,
    CONFIG_NAME_CHARS_MAX,
    CONFIG_VALUE_CHARS_MAX,
    CREATE_TOPIC_WAIT_MS_DEFAULT,
    CREATE_TOPIC_WAIT_MS_MAX,
    ELECT_PARTITIONS_MAX,
    NODE_ID_MAX,
    PARTITION_COUNT_DEFAULT,
    PARTITION_COUNT_MAX,
    REBALANCE_MOVES_MAX,
    REPLICAS_PER_NODE_MAX_DEFAULT,
)
from brook.services.coordinator.quotas import QuotaAdmin
from brook.services.coordinator.reassign_progress import (
    LogDir,
    RateTracker,
    ReplicaProgress,
    gather_log_dirs,
    replica_progress,
)
from brook.services.metadata import configs
from brook.services.metadata.acls import AclCache
from brook.services.metadata.cache import MetadataCache
from brook.services.metadata.cas import compare_and_swap
from brook.services.metadata.model import (
    NODE_STATE_DECOMMISSIONING,
    NodeInfo,
    NodeStateRecord,
    PartitionRecord,
    TopicRecord,
)
from brook.services.metadata.quotas import QuotaCache
from brook.services.metadata.replication_throttle import (
    ThrottleRates,
    check_rate,
    read_rates,
    write_rate,
)
from brook.services.metadata.store import MetadataStore
from brook.structs import TopicPartition
from brook.v1 import admin_pb2, admin_pb2_grpc, common_pb2

log = logging.getLogger("brook.coordinator.admin")

# The RPCs, as the operations table names them.
_SERVICE = "brook.v1.AdminService/"
# DrainLeadership's hold: how long preferred elections keep leadership off the node.
DRAIN_HOLD_MS_DEFAULT = 60_000
DRAIN_HOLD_MS_MIN = 1_000
DRAIN_HOLD_MS_MAX = 600_000

# ListReassignments pages (partitions per page).
REASSIGN_PAGE_SIZE_DEFAULT = 100
REASSIGN_PAGE_SIZE_MAX = 1000

ELECTION_TYPES = (
    admin_pb2.ELECTION_TYPE_UNSPECIFIED,
    admin_pb2.ELECTION_TYPE_PREFERRED,
    admin_pb2.ELECTION_TYPE_UNCLEAN,
)


def _check_configs(configs_set: Mapping[str, str], configs_deleted: Collection[str]) -> None:
    """Bounds on a request's config entries, before any is parsed."""
    check_count("configs", configs_set, CONFIG_ENTRIES_PER_REQUEST_MAX)
    check_count("delete", configs_deleted, CONFIG_ENTRIES_PER_REQUEST_MAX)
    check_each_chars("config name", configs_set.keys(), CONFIG_NAME_CHARS_MAX)
    check_each_chars("config name", configs_deleted, CONFIG_NAME_CHARS_MAX)
    check_each_chars("config value", configs_set.values(), CONFIG_VALUE_CHARS_MAX)


def _check_replica_assignments(
    field: str, assignments: Iterable[admin_pb2.ReplicaAssignment]
) -> None:
    for assignment in assignments:
        validation.validate_replica_ids(field, assignment.replica_ids)


def _status(record: PartitionRecord) -> admin_pb2.ReassignmentStatus:
    return admin_pb2.ReassignmentStatus(
        topic=record.topic,
        partition=record.partition,
        replica_ids=list(record.replicas),
        adding_replica_ids=list(record.adding_replicas),
        removing_replica_ids=list(record.removing_replicas),
    )


def _progress(progress: ReplicaProgress) -> admin_pb2.ReplicaCopyProgress:
    answer = admin_pb2.ReplicaCopyProgress(node_id=progress.node_id)
    if progress.copied_bytes is not None:
        answer.copied_bytes = progress.copied_bytes
    if progress.remaining_bytes is not None:
        answer.remaining_bytes = progress.remaining_bytes
    if progress.copied_records is not None:
        answer.copied_records = progress.copied_records
    if progress.remaining_records is not None:
        answer.remaining_records = progress.remaining_records
    if progress.rate_bytes_per_s is not None:
        answer.rate_bytes_per_second = progress.rate_bytes_per_s
    if progress.eta_s is not None:
        answer.estimated_remaining_seconds = progress.eta_s
    return answer


def _throttle(rates: ThrottleRates) -> admin_pb2.ReplicationThrottle:
    return admin_pb2.ReplicationThrottle(
        cluster_bytes_per_second=rates.cluster_bytes_per_s,
        nodes=[admin_pb2.NodeReplicationThrottle(node_id=n, bytes_per_second=rate)
               for n, rate in sorted(rates.nodes.items())],
    )  # fmt: skip


def _reassignment_token(record: PartitionRecord) -> str:
    """A sort key of (topic, partition) as a string: ' ' sorts before every character
    a topic name may hold, and the partition is zero-padded."""
    return f"{record.topic} {record.partition:010d}"


def _topic_not_found(name: str) -> BrookError:
    return BrookError("TOPIC_NOT_FOUND", f"topic {quote(name)} does not exist", {"topic": name})


def _changed_or_none(current: TopicRecord, new: TopicRecord) -> TopicRecord | None:
    """`new` when it differs from `current` (a write is due), else None."""
    return new if new != current else None


def _topic_written_after(name: str, revision: int | None) -> Callable[[MetadataCache], bool]:
    """A cache predicate: the topic record changed after `revision` (or is gone)."""
    seen = revision or 0
    return lambda cache: cache.topic_revisions.get(name, seen + 1) > seen


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """brook.v1.AdminService over the metadata store, cache and controller."""

    def __init__(
        self,
        store: MetadataStore,
        cache: MetadataCache,
        controller: Controller,
        *,
        clock: Clock = SYSTEM_CLOCK,
        replicas_per_node_max: int = REPLICAS_PER_NODE_MAX_DEFAULT,
        authz: Authorizer = ALLOW_ALL,
        acls: AclCache | None = None,
        quotas: QuotaCache | None = None,
        balancer: BalanceDriver | None = None,
    ) -> None:
        self.store = store
        # The balancer's driver (issue 13); one that runs no automatic passes by default.
        self.balancer = balancer if balancer is not None else BalanceDriver(
            controller, enabled=False
        )
        self.cache = cache
        self.controller = controller
        self.authz = authz
        self.acl_admin = AclAdmin(acls if acls is not None else AclCache(store))
        self.quota_admin = QuotaAdmin(quotas if quotas is not None else QuotaCache(store))
        self._clock = clock
        self.replicas_per_node_max = replicas_per_node_max
        self._lock = asyncio.Lock()
        # Copy rates of adding replicas, from ListReassignments' samples (in memory).
        self.copy_rates = RateTracker(clock)
        # This process's Endpoint id (set once serving): a role key naming ourselves while
        # we are not active is stale (our lease was lost), not a pointer to another process.
        self.endpoint_id = ""

    # -- helpers -----------------------------------------------------------------------
    def _require_active(self) -> None:
        if self.controller.active:
            return
        holder = self.cache.coordinator
        if holder is None or holder.id == self.endpoint_id:
            raise BrookError(
                "COORDINATOR_NOT_AVAILABLE", "no coordinator is active yet; retry shortly"
            )
        raise BrookError(
            "NOT_COORDINATOR",
            f"this coordinator is a standby; the active one is at {holder.address}",
            {"coordinator_address": holder.address, "coordinator_id": holder.id},
        )

    def _topic(self, name: str) -> TopicRecord:
        validation.check_topic_name_length(name)
        record = self.cache.topics.get(name)
        if record is None:
            raise _topic_not_found(name)
        return record

    async def _fresh_topic(self, name: str) -> tuple[TopicRecord, int]:
        found = await self.store.get_topic(name)
        if found is None:
            raise _topic_not_found(name)
        return found

    def _live(self) -> frozenset[int]:
        return frozenset(self.cache.nodes)

    def _placeable_nodes(self) -> dict[int, NodeInfo]:
        """Live nodes that take new replicas (not decommissioning)."""
        leaving = balance.draining(self.cache.node_states)
        return {n: info for n, info in self.cache.nodes.items() if n not in leaving}

    def _load(self) -> dict[int, placement.NodeLoad]:
        records = [p for p in self.cache.partitions.values() if p.topic in self.cache.topics]
        return placement.current_load([p.replicas for p in records], [p.leader for p in records])

    async def _catch_up(self, predicate: Callable[[MetadataCache], bool]) -> None:
        if not await self.cache.wait_for(predicate, CACHE_CATCH_UP_S_MAX):
            log.warning("cache did not show a committed write within %.1fs", CACHE_CATCH_UP_S_MAX)

    # -- topics ------------------------------------------------------------------------
    @handle_errors
    async def CreateTopic(
        self, request: admin_pb2.CreateTopicRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreateTopicResponse:
        name = request.name
        validation.validate_topic_name(name)
        self.authz.require(context, _SERVICE + "CreateTopic", topic=name)
        self._require_active()
        check_count("replica_assignments", request.replica_assignments, PARTITION_COUNT_MAX)
        _check_replica_assignments("replica_assignments", request.replica_assignments)
        _check_configs(request.configs, ())
        wait_s = _wait_for_leaders_s(request.timeout_ms)
        live_nodes = self._placeable_nodes()
        assignments: dict[int, tuple[int, ...]] = {}
        for assignment in request.replica_assignments:
            if assignment.partition in assignments:
                raise BrookError(
                    "INVALID_REQUEST",
                    f"partition {assignment.partition} is assigned twice",
                    {"partition": assignment.partition},
                )
            assignments[assignment.partition] = tuple(assignment.replica_ids)
        if assignments:
            count = request.partition_count or len(assignments)
            validation.validate_partition_count(count)
            factor = validation.validate_assignments(assignments, range(count), live_nodes)
            if request.replication_factor and request.replication_factor != factor:
                raise BrookError(
                    "INVALID_REPLICATION_FACTOR",
                    f"replication_factor {request.replication_factor} differs from the"
                    f" assignments' {factor}",
                )
        else:
            count = request.partition_count or PARTITION_COUNT_DEFAULT
            validation.validate_partition_count(count)
            factor = request.replication_factor or validation.default_replication_factor(
                len(live_nodes)
            )
            validation.validate_replication_factor(factor, len(live_nodes))
        overrides = configs.validate_configs(dict(request.configs), replication_factor=factor)
        async with self._lock:
            if name in self.cache.topics:
                raise BrookError(
                    "TOPIC_ALREADY_EXISTS", f"topic {name!r} already exists", {"topic": name}
                )
            if assignments:
                replica_lists = [assignments[i] for i in range(count)]
            else:
                replica_lists = placement.place_replicas(
                    count, factor, list(live_nodes.values()), self._load()
                )
            validation.check_replicas_per_node(
                self._load(), replica_lists, self.replicas_per_node_max
            )
            topic = TopicRecord(
                name=name,
                topic_id=uuid.uuid4().hex,
                partition_count=count,
                replication_factor=factor,
                configs=overrides,
                created_ms=self._clock.now_ms(),
            )
            partitions = [
                PartitionRecord(
                    topic=name,
                    partition=index,
                    topic_id=topic.topic_id,
                    replicas=replicas,
                    leader=replicas[0],
                    leader_epoch=0,
                    isr=replicas,
                )
                for index, replicas in enumerate(replica_lists)
            ]
            if not request.validate_only:
                await self.store.create_topic(topic, partitions)
                log.info("created topic %s: %d partitions, RF %d", name, count, factor)
                await self._catch_up(
                    lambda c: (
                        c.topics.get(name) is not None and c.topics[name].topic_id == topic.topic_id
                    )
                )
        if request.wait_for_leaders and not request.validate_only:
            # Outside the admin lock: other admin calls need not wait for these leaders.
            await wait_for_leaders(self.cache, name, wait_s, self._clock)
        return admin_pb2.CreateTopicResponse(
            topic=views.topic_description(topic, partitions, live_nodes)
        )

    @handle_errors
    async def DeleteTopic(
        self, request: admin_pb2.DeleteTopicRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DeleteTopicResponse:
        validation.check_topic_name_length(request.name)
        self.authz.require(context, _SERVICE + "DeleteTopic", topic=request.name)
        self._require_active()
        async with self._lock:
            deleted = await self.store.delete_topic(request.name)
            log.info("deleted topic %s (%s)", deleted.name, deleted.topic_id)
            await self._catch_up(
                lambda c: (
                    c.topics.get(request.name) is None
                    or c.topics[request.name].topic_id != deleted.topic_id
                )
            )
        return admin_pb2.DeleteTopicResponse(topic_id=deleted.topic_id)

    @handle_errors
    async def ListTopics(
        self, request: admin_pb2.ListTopicsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListTopicsResponse:
        principal = self.authz.require(context, _SERVICE + "ListTopics")
        self._require_active()
        size = validation.page_size(request.page_size)
        after = validation.decode_page_token(request.page_token)
        topics = dict(self.cache.topics)
        visible = self.authz.visible_topics(_SERVICE + "ListTopics", principal, list(topics))
        names, next_token = validation.page(visible, after, size)
        return admin_pb2.ListTopicsResponse(
            topics=[views.topic_summary(topics[n]) for n in names], next_page_token=next_token
        )

    @handle_errors
    async def DescribeTopic(
        self, request: admin_pb2.DescribeTopicRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DescribeTopicResponse:
        validation.check_topic_name_length(request.name)
        self.authz.require(context, _SERVICE + "DescribeTopic", topic=request.name)
        self._require_active()
        topic = self._topic(request.name)
        return admin_pb2.DescribeTopicResponse(
            topic=views.topic_description(
                topic, self.cache.topic_partitions(topic.name), self._live()
            )
        )

    @handle_errors
    async def DescribeCluster(
        self, request: admin_pb2.DescribeClusterRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DescribeClusterResponse:
        self.authz.require(context, _SERVICE + "DescribeCluster")
        self._require_active()
        live = self._live()
        records = [
            p for name in sorted(self.cache.topics) for p in self.cache.topic_partitions(name)
        ]
        response = admin_pb2.DescribeClusterResponse(
            cluster_id=self.cache.cluster_id,
            nodes=views.node_descriptions(self.cache.nodes, records),
            under_replicated_partitions=[
                common_pb2.PartitionRef(topic=p.topic, partition=p.partition)
                for p in records
                if views.is_under_replicated(p, live)
            ],
            offline_partitions=[
                common_pb2.PartitionRef(topic=p.topic, partition=p.partition)
                for p in records
                if views.is_offline(p, live)
            ],
            topic_count=len(self.cache.topics),
            partition_count=len(records),
        )
        coordinator = views.endpoint(self.cache.coordinator)
        if coordinator is not None:
            response.coordinator.CopyFrom(coordinator)
        group_manager = views.endpoint(self.cache.group_manager)
        if group_manager is not None:
            response.group_manager.CopyFrom(group_manager)
        return response

    # -- configs -----------------------------------------------------------------------
    @handle_errors
    async def DescribeConfigs(
        self, request: admin_pb2.DescribeConfigsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DescribeConfigsResponse:
        validation.check_topic_name_length(request.topic)
        self.authz.require(context, _SERVICE + "DescribeConfigs", topic=request.topic)
        self._require_active()
        return admin_pb2.DescribeConfigsResponse(
            configs=views.config_entries(self._topic(request.topic))
        )

    @handle_errors
    async def AlterConfigs(
        self, request: admin_pb2.AlterConfigsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.AlterConfigsResponse:
        validation.check_topic_name_length(request.topic)
        self.authz.require(context, _SERVICE + "AlterConfigs", topic=request.topic)
        self._require_active()
        _check_configs(request.set, request.delete)
        deletes = set()
        for raw in request.delete:
            key = configs.normalize_name(raw)
            if key not in configs.TOPIC_CONFIGS:
                raise BrookError(
                    "INVALID_CONFIG", f"config {quote(raw)}: unknown config", {"config": raw}
                )
            deletes.add(key)
        sets = configs.validate_configs(dict(request.set))
        both = deletes & set(sets)
        if both:
            raise BrookError("INVALID_REQUEST", f"configs {sorted(both)} are both set and deleted")

        def altered(topic: TopicRecord) -> TopicRecord:
            merged = {k: v for k, v in {**topic.configs, **sets}.items() if k not in deletes}
            merged = configs.validate_configs(merged, replication_factor=topic.replication_factor)
            return dataclasses.replace(topic, configs=merged)

        async with self._lock:
            if request.validate_only:
                topic, _ = await self._fresh_topic(request.topic)
                return admin_pb2.AlterConfigsResponse(configs=views.config_entries(altered(topic)))
            outcome = await compare_and_swap(
                read=lambda: self._fresh_topic(request.topic),
                decide=lambda topic: _changed_or_none(topic, altered(topic)),
                write=self.store.put_topic,
                what=f"topic {request.topic!r}",
            )
            updated = outcome.decision or outcome.current
            assert updated is not None  # _fresh_topic raised TOPIC_NOT_FOUND otherwise
            if outcome.decision is not None:
                log.info("topic %s configs now %s", updated.name, updated.configs)
                await self._catch_up(_topic_written_after(updated.name, outcome.revision))
        return admin_pb2.AlterConfigsResponse(configs=views.config_entries(updated))

    # -- partitions and leadership -----------------------------------------------------
    @handle_errors
    async def CreatePartitions(
        self, request: admin_pb2.CreatePartitionsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreatePartitionsResponse:
        validation.check_topic_name_length(request.topic)
        self.authz.require(context, _SERVICE + "CreatePartitions", topic=request.topic)
        self._require_active()
        validation.validate_partition_count(request.partition_count)
        live_nodes = self._placeable_nodes()

        def grown(topic: TopicRecord) -> tuple[TopicRecord, list[PartitionRecord]]:
            """The topic with the requested count, and the partitions to add (pure)."""
            if request.partition_count <= topic.partition_count:
                raise BrookError(
                    "INVALID_PARTITION_COUNT",
                    f"topic {topic.name!r} has {topic.partition_count} partitions; the new"
                    f" count {request.partition_count} must be larger",
                    {"topic": topic.name, "partition_count": topic.partition_count},
                )
            validation.validate_replication_factor(topic.replication_factor, len(live_nodes))
            added = request.partition_count - topic.partition_count
            replica_lists = placement.place_replicas(
                added, topic.replication_factor, list(live_nodes.values()), self._load()
            )
            validation.check_replicas_per_node(
                self._load(), replica_lists, self.replicas_per_node_max
            )
            new_partitions = [
                PartitionRecord(
                    topic=topic.name,
                    partition=topic.partition_count + i,
                    topic_id=topic.topic_id,
                    replicas=replicas,
                    leader=replicas[0],
                    isr=replicas,
                )
                for i, replicas in enumerate(replica_lists)
            ]
            updated = dataclasses.replace(topic, partition_count=request.partition_count)
            return updated, new_partitions

        async def add(plan: tuple[TopicRecord, list[PartitionRecord]], revision: int) -> bool:
            updated, new_partitions = plan
            if request.validate_only:
                return True
            return await self.store.add_partitions(updated, revision, new_partitions)

        async with self._lock:
            outcome = await compare_and_swap(
                read=lambda: self._fresh_topic(request.topic),
                decide=grown,
                write=add,
                what=f"topic {request.topic!r}",
            )
            assert outcome.current is not None and outcome.decision is not None
            topic, (updated, new_partitions) = outcome.current, outcome.decision
            existing = [p for p, _ in await self.store.get_partitions(topic.name)]
            everything = [*existing[: topic.partition_count], *new_partitions]
            if not request.validate_only:
                log.info("topic %s now has %d partitions", topic.name, updated.partition_count)
                await self._catch_up(_topic_written_after(topic.name, outcome.revision))
        return admin_pb2.CreatePartitionsResponse(
            topic=views.topic_description(updated, everything, live_nodes)
        )

    @handle_errors
    async def ElectLeaders(
        self, request: admin_pb2.ElectLeadersRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ElectLeadersResponse:
        self.authz.require(context, _SERVICE + "ElectLeaders")
        self._require_active()
        check_enum("election_type", request.election_type, ELECTION_TYPES)
        check_count("partitions", request.partitions, ELECT_PARTITIONS_MAX)
        for ref in request.partitions:
            validation.check_topic_name_length(ref.topic, "partitions.topic")
        unclean = request.election_type == admin_pb2.ELECTION_TYPE_UNCLEAN
        if request.partitions:
            refs = [TopicPartition.of(ref) for ref in request.partitions]
        else:
            refs = sorted(
                TopicPartition(name, p.partition)
                for name in self.cache.topics
                for p in self.cache.topic_partitions(name)
            )

        def choose(record: PartitionRecord) -> election.Outcome:
            live = self._live()
            if unclean:
                return election.unclean_election(record, live)
            return election.preferred_election(record, live)

        results = []
        for topic_name, index in refs:
            result = admin_pb2.ElectionResult(topic=topic_name, partition=index)
            topic = self.cache.topics.get(topic_name)
            if topic is None or not 0 <= index < topic.partition_count:
                reason = "TOPIC_NOT_FOUND" if topic is None else "PARTITION_NOT_FOUND"
                result.error.CopyFrom(
                    BrookError(reason, f"{topic_name}-{index} does not exist").to_partition_error()
                )
                results.append(result)
                continue
            reasons: list[Reason] = []

            def decide(
                record: PartitionRecord, reasons: list[Reason] = reasons
            ) -> PartitionRecord | None:
                outcome = choose(record)
                if outcome.reason:
                    reasons.append(outcome.reason)
                return outcome.record

            written, seen = await self.controller.commit(TopicPartition(topic_name, index), decide)
            final = written or seen
            if final is not None:
                result.leader_id = final.leader
                result.leader_epoch = final.leader_epoch
            if written is None:
                reason = reasons[-1] if reasons else Reason.ELIGIBLE_LEADERS_NOT_AVAILABLE
                result.error.CopyFrom(
                    BrookError(
                        reason, f"{topic_name}-{index}: no election ({reason})"
                    ).to_partition_error()
                )
            results.append(result)
        return admin_pb2.ElectLeadersResponse(results=results)

    @handle_errors
    async def ReassignPartitions(
        self, request: admin_pb2.ReassignPartitionsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ReassignPartitionsResponse:
        self.authz.require(context, _SERVICE + "ReassignPartitions")
        self._require_active()
        check_count("reassignments", request.reassignments, PARTITION_COUNT_MAX)
        _check_replica_assignments("reassignments", request.reassignments)
        topic = self._topic(request.topic)
        if not request.reassignments:
            raise BrookError("INVALID_REQUEST", "no reassignments given")
        live = self._live()
        plans: dict[int, tuple[int, ...]] = {}
        for assignment in request.reassignments:
            index = assignment.partition
            if index in plans:
                raise BrookError(
                    "INVALID_REQUEST", f"partition {index} is named twice", {"partition": index}
                )
            if not 0 <= index < topic.partition_count:
                raise BrookError(
                    "PARTITION_NOT_FOUND",
                    f"topic {topic.name!r} has no partition {index}",
                    {"topic": topic.name, "partition": index},
                )
            target = tuple(assignment.replica_ids)
            if target:
                validation.validate_assignments({index: target}, [index], live)
            plans[index] = target
        throttle = None
        if request.HasField("throttle_bytes_per_second"):
            throttle = check_rate("throttle_bytes_per_second", request.throttle_bytes_per_second)

        def outcome_for(record: PartitionRecord, target: tuple[int, ...]) -> election.Outcome:
            if not target:
                return reassignment.cancel(record, self._live())
            return reassignment.start(record, target, self._live())

        # Check every partition before writing any, so a bad request changes nothing.
        for index, target in plans.items():
            record = self.cache.partitions.get((topic.name, index))
            if record is None:
                raise BrookError("PARTITION_NOT_FOUND", f"{topic.name}-{index} has no record")
            outcome = outcome_for(record, target)
            if outcome.reason:
                raise BrookError(
                    outcome.reason,
                    f"{topic.name}-{index}: cannot {'cancel' if not target else 'start'} the"
                    f" reassignment ({outcome.reason})",
                    {"topic": topic.name, "partition": index},
                )
        statuses = []
        async with self._lock:
            if throttle is not None and not request.validate_only:
                # Before the moves start, so their first fetches are throttled.
                await self._set_throttle(None, throttle)
            for index, target in plans.items():
                if request.validate_only:
                    record = self.cache.partitions[(topic.name, index)]
                    final = outcome_for(record, target).record or record
                else:
                    reasons: list[Reason] = []

                    def decide(
                        record: PartitionRecord,
                        target: tuple[int, ...] = target,
                        reasons: list[Reason] = reasons,
                    ) -> PartitionRecord | None:
                        outcome = outcome_for(record, target)
                        if outcome.reason:
                            reasons.append(outcome.reason)
                        return outcome.record

                    key = TopicPartition(topic.name, index)
                    written, seen = await self.controller.commit(key, decide)
                    if written is None and reasons:
                        raise BrookError(
                            reasons[-1],
                            f"{topic.name}-{index}: the partition changed meanwhile"
                            f" ({reasons[-1]}); earlier partitions of this request were applied",
                            {"topic": topic.name, "partition": index},
                        )
                    committed = written or seen
                    if committed is None:
                        continue
                    final = committed
                    log.info(
                        "partition %s-%d: reassignment %s -> replicas %s (adding %s, removing %s)",
                        topic.name, index, "cancelled" if not target else "started",
                        list(final.replicas), list(final.adding_replicas),
                        list(final.removing_replicas),
                    )  # fmt: skip
                statuses.append(_status(final))
        return admin_pb2.ReassignPartitionsResponse(reassignments=statuses)

    @handle_errors
    async def ListReassignments(
        self, request: admin_pb2.ListReassignmentsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListReassignmentsResponse:
        self.authz.require(context, _SERVICE + "ListReassignments")
        self._require_active()
        if request.page_size < 0:
            raise BrookError("INVALID_REQUEST", f"page_size {request.page_size} is negative")
        size = min(request.page_size or REASSIGN_PAGE_SIZE_DEFAULT, REASSIGN_PAGE_SIZE_MAX)
        after = validation.decode_page_token(request.page_token)
        topics = sorted(self.cache.topics)
        if request.topic:
            validation.check_topic_name_length(request.topic)
            topics = [request.topic] if request.topic in self.cache.topics else []
        moving = [
            p
            for name in topics
            for p in self.cache.topic_partitions(name)
            if p.adding_replicas or p.removing_replicas
        ]
        self.copy_rates.forget_except(
            {(p.topic, p.partition, n) for p in moving for n in p.adding_replicas}
        )
        remaining = [p for p in moving if _reassignment_token(p) > after]
        page = remaining[:size]
        next_token = (validation.encode_page_token(_reassignment_token(page[-1]))
                      if len(remaining) > size else "")  # fmt: skip
        statuses = await self._with_progress(page)
        return admin_pb2.ListReassignmentsResponse(
            reassignments=statuses, next_page_token=next_token,
            throttle=_throttle(await read_rates(self.store)),
        )  # fmt: skip

    async def _with_progress(
        self, records: list[PartitionRecord]
    ) -> list[admin_pb2.ReassignmentStatus]:
        """The records' statuses with each adding replica's progress, from the leader's
        and the adding nodes' DescribeLogDirs (one call per node and topic)."""
        asks = {(node, p.topic) for p in records if p.adding_replicas
                for node in (p.leader, *p.adding_replicas) if node >= 0}  # fmt: skip
        dirs = await gather_log_dirs(dict(self.cache.nodes), asks)
        statuses = []
        for record in records:
            status = _status(record)
            key = TopicPartition(record.topic, record.partition)
            leader: LogDir | None = dirs.get(record.leader, {}).get(key)
            for node in record.adding_replicas:
                adding = dirs.get(node, {}).get(key)
                rate = None
                if adding is not None:
                    rate = self.copy_rates.observe((record.topic, record.partition, node),
                                                   adding.size_bytes)  # fmt: skip
                status.progress.append(_progress(replica_progress(node, leader, adding, rate)))
            statuses.append(status)
        return statuses

    # -- the replication throttle (issue 13) -------------------------------------------
    async def _set_throttle(self, node_id: int | None, rate_bytes_per_s: int) -> None:
        await write_rate(self.store, node_id, rate_bytes_per_s)
        log.warning("replication throttle%s: %s", "" if node_id is None else f" of node {node_id}",
                    f"{rate_bytes_per_s} bytes/s" if rate_bytes_per_s else "removed")

    @handle_errors
    async def AlterReplicationThrottle(
        self, request: admin_pb2.AlterReplicationThrottleRequest,
        context: grpc.aio.ServicerContext,
    ) -> admin_pb2.AlterReplicationThrottleResponse:  # fmt: skip
        self.authz.require(context, _SERVICE + "AlterReplicationThrottle")
        self._require_active()
        node_id = None
        if request.HasField("node_id"):
            check_range("node_id", request.node_id, 0, NODE_ID_MAX)
            node_id = int(request.node_id)
        rate = check_rate("rate_bytes_per_second", request.rate_bytes_per_second)
        async with self._lock:
            await self._set_throttle(node_id, rate)
            rates = await read_rates(self.store)
        return admin_pb2.AlterReplicationThrottleResponse(throttle=_throttle(rates))

    @handle_errors
    async def DescribeReplicationThrottle(
        self, request: admin_pb2.DescribeReplicationThrottleRequest,
        context: grpc.aio.ServicerContext,
    ) -> admin_pb2.DescribeReplicationThrottleResponse:  # fmt: skip
        self.authz.require(context, _SERVICE + "DescribeReplicationThrottle")
        self._require_active()
        return admin_pb2.DescribeReplicationThrottleResponse(
            throttle=_throttle(await read_rates(self.store))
        )

    # -- nodes and balancing (issue 13; balance.py, balance_driver.py) ----------------
    def _records(self) -> list[PartitionRecord]:
        return [p for name in sorted(self.cache.topics) for p in self.cache.topic_partitions(name)]

    def _node_status(self, node_id: int) -> admin_pb2.NodeStatus:
        for status in balance.node_statuses(
            self.cache.nodes, self.cache.node_states, self._records()
        ):
            if status.node_id == node_id:
                return views.node_status(status)
        return views.node_status(balance.NodeStatus(node_id, balance.STATUS_OFFLINE, False))

    @staticmethod
    def _check_node_id(request: admin_pb2.DecommissionNodeRequest
                       | admin_pb2.RecommissionNodeRequest
                       | admin_pb2.DrainLeadershipRequest) -> int:  # fmt: skip
        if not request.HasField("node_id"):
            raise BrookError("INVALID_REQUEST", "node_id is required", {"field": "node_id"})
        check_range("node_id", request.node_id, 0, NODE_ID_MAX)
        return int(request.node_id)

    @handle_errors
    async def ListNodes(
        self, request: admin_pb2.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListNodesResponse:
        self.authz.require(context, _SERVICE + "ListNodes")
        self._require_active()
        statuses = balance.node_statuses(self.cache.nodes, self.cache.node_states, self._records(),
                                         self.balancer.known_node_sizes())  # fmt: skip
        return admin_pb2.ListNodesResponse(nodes=[views.node_status(s) for s in statuses])

    @handle_errors
    async def DrainLeadership(
        self, request: admin_pb2.DrainLeadershipRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DrainLeadershipResponse:
        method = _SERVICE + "DrainLeadership"
        principal = self.authz.require(context, method)
        node_id = self._check_node_id(request)
        hold_ms = request.hold_ms or DRAIN_HOLD_MS_DEFAULT
        check_range("hold_ms", hold_ms, DRAIN_HOLD_MS_MIN, DRAIN_HOLD_MS_MAX)
        caller = principal.node_id
        if self.authz.enabled and caller is not None and caller != node_id:
            # cluster_action lets a storage node drain itself, not another node.
            raise self.authz.deny(
                context, method, principal, Operation.CLUSTER_ACTION, CLUSTER, "not_the_node",
                f"a storage node may drain only its own leadership (node:{caller})",
            )
        self._require_active()
        if node_id not in self.cache.nodes:
            # Only a live node leads anything; also bounds the controller's drain holds.
            raise BrookError(
                "INVALID_REQUEST", f"node {node_id} is not live: it leads nothing to drain",
                {"node_id": node_id},
            )  # fmt: skip
        moved, remaining = await self.controller.drain_leadership(node_id, hold_ms / 1000)
        log.warning("node %d: controlled shutdown: %d leaderships moved, %d left", node_id,
                    moved, remaining)  # fmt: skip
        return admin_pb2.DrainLeadershipResponse(moved_count=moved, remaining_count=remaining)

    @handle_errors
    async def DecommissionNode(
        self, request: admin_pb2.DecommissionNodeRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DecommissionNodeResponse:
        self.authz.require(context, _SERVICE + "DecommissionNode")
        self._require_active()
        node_id = self._check_node_id(request)
        known = {s.node_id for s in balance.node_statuses(
            self.cache.nodes, self.cache.node_states, self._records())}  # fmt: skip
        if node_id not in known:
            raise BrookError(
                "INVALID_REQUEST", f"node {node_id} is not known to the cluster",
                {"node_id": node_id},
            )  # fmt: skip
        async with self._lock:
            leaving = balance.draining(self.cache.node_states) | {node_id}
            staying = [n for n in self.cache.nodes if n not in leaving]
            factor = max((t.replication_factor for t in self.cache.topics.values()), default=0)
            if len(staying) < factor:
                raise BrookError(
                    "INVALID_REQUEST",
                    f"decommissioning node {node_id} would leave {len(staying)} active live"
                    f" nodes, fewer than the largest replication factor ({factor})",
                    {"node_id": node_id, "replication_factor": factor},
                )
            if node_id not in self.cache.node_states:
                await self.store.put_node_state(
                    NodeStateRecord(node_id, NODE_STATE_DECOMMISSIONING, self._clock.now_ms())
                )
                await self._catch_up(lambda cache: node_id in cache.node_states)
                log.warning("node %d: decommissioning (replicas move off it)", node_id)
        return admin_pb2.DecommissionNodeResponse(node=self._node_status(node_id))

    @handle_errors
    async def RecommissionNode(
        self, request: admin_pb2.RecommissionNodeRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RecommissionNodeResponse:
        self.authz.require(context, _SERVICE + "RecommissionNode")
        self._require_active()
        node_id = self._check_node_id(request)
        async with self._lock:
            if node_id in self.cache.node_states:
                await self.store.delete_node_state(node_id)
                await self._catch_up(lambda cache: node_id not in cache.node_states)
                log.warning("node %d: active again (recommissioned)", node_id)
        return admin_pb2.RecommissionNodeResponse(node=self._node_status(node_id))

    @handle_errors
    async def RebalancePartitions(
        self, request: admin_pb2.RebalancePartitionsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RebalancePartitionsResponse:
        self.authz.require(context, _SERVICE + "RebalancePartitions")
        self._require_active()
        check_range("max_moves", request.max_moves, 0, REBALANCE_MOVES_MAX)
        limit = request.max_moves or REBALANCE_MOVES_MAX
        throttle = None
        if request.HasField("throttle_bytes_per_second"):
            throttle = check_rate("throttle_bytes_per_second", request.throttle_bytes_per_second)
        plan = await self.balancer.plan_async()
        moves = list(plan.moves[:limit])
        started: set[TopicPartition] = set()
        if not request.dry_run:
            async with self._lock:
                if throttle is not None:
                    await self._set_throttle(None, throttle)
                startable = balance.moves_to_start(
                    dataclasses.replace(plan, moves=tuple(moves)),
                    self.balancer.records(),
                    self._live(),
                    max_in_flight=REBALANCE_MOVES_MAX,
                )
                for move in startable:
                    if await self.balancer.start([move]):
                        started.add(move.key)
        return admin_pb2.RebalancePartitionsResponse(
            moves=[views.planned_move(m, m.key in started) for m in moves],
            bytes_to_copy=sum(m.bytes_to_copy for m in moves),
            started_count=len(started),
        )

    # -- access control lists (issue 11; acls.py) --------------------------------------
    @handle_errors
    async def CreateAcls(
        self, request: admin_pb2.CreateAclsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreateAclsResponse:
        self.authz.require(context, _SERVICE + "CreateAcls")
        self._require_active()
        async with self._lock:
            return await self.acl_admin.create(request)

    @handle_errors
    async def DescribeAcls(
        self, request: admin_pb2.DescribeAclsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DescribeAclsResponse:
        self.authz.require(context, _SERVICE + "DescribeAcls")
        self._require_active()
        return self.acl_admin.describe(request)

    @handle_errors
    async def DeleteAcls(
        self, request: admin_pb2.DeleteAclsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DeleteAclsResponse:
        self.authz.require(context, _SERVICE + "DeleteAcls")
        self._require_active()
        async with self._lock:
            return await self.acl_admin.delete(request)

    @handle_errors
    async def AlterClientQuotas(
        self, request: admin_pb2.AlterClientQuotasRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.AlterClientQuotasResponse:
        self.authz.require(context, _SERVICE + "AlterClientQuotas")
        self._require_active()
        async with self._lock:
            return await self.quota_admin.alter(request)

    @handle_errors
    async def DescribeClientQuotas(
        self, request: admin_pb2.DescribeClientQuotasRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DescribeClientQuotasResponse:
        self.authz.require(context, _SERVICE + "DescribeClientQuotas")
        self._require_active()
        return self.quota_admin.describe(request)


def _wait_for_leaders_s(timeout_ms: int) -> float:
    """CreateTopic's wait_for_leaders bound in seconds (0 means the default)."""
    check_range("timeout_ms", timeout_ms, 0, CREATE_TOPIC_WAIT_MS_MAX)
    return (timeout_ms or CREATE_TOPIC_WAIT_MS_DEFAULT) / 1000.0
