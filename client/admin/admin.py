"""The asyncio admin client: AdminService calls with coordinator redirects.

AdminService is served by the active coordinator; a standby answers NOT_COORDINATOR
and names the active one in the error metadata. `Admin` sends each call to the
coordinator it last reached (else to the bootstrap addresses in turn), follows a
redirect at once, and on COORDINATOR_NOT_AVAILABLE or a refused connection backs off and
tries the next address, all within `max_attempts` and `deadline_ms` (the rule and the
back-off are `brook.client.retry`'s). A deadline-exceeded mutating call is not retried (it
may have been applied); reads are.

Results are the API's protobuf messages (`brook.v1.admin_pb2`), which print well as JSON
with `google.protobuf.json_format`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc

from brook.client import defaults
from brook.client.metadata import ChannelPool, parse_bootstrap
from brook.client.retry import RetryPolicy, call_with_retry
from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason, from_rpc_error
from brook.transport import ChannelSecurity, client_security
from brook.v1 import admin_pb2, admin_pb2_grpc, common_pb2, metadata_pb2, metadata_pb2_grpc

log = logging.getLogger("brook.client.admin")

# Error metadata keys under which a standby may name the active coordinator.
_REDIRECT_KEYS = ("coordinator_address", "active_address", "leader_address", "address")


def _may_retry(error: BrookError, mutating: bool) -> bool:
    """Which failures an admin call retries: a standby's redirect, no active coordinator,
    and transport failures, except a mutating call that may have been applied (its
    deadline passed: only a refused connection proves it was not)."""
    if error.reason in (Reason.NOT_COORDINATOR, Reason.COORDINATOR_NOT_AVAILABLE):
        return True
    if error.reason is Reason.TRANSPORT and error.retriable:
        return error.code is grpc.StatusCode.UNAVAILABLE or not mutating
    return False


ELECTION_TYPES = {
    "preferred": admin_pb2.ELECTION_TYPE_PREFERRED,
    "unclean": admin_pb2.ELECTION_TYPE_UNCLEAN,
}


class Admin:
    """Topic and cluster administration. Use `async with Admin(bootstrap) as admin:`."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        request_timeout_ms: int = defaults.REQUEST_TIMEOUT_MS,
        max_attempts: int = defaults.ADMIN_ATTEMPTS_MAX,
        retry_backoff_ms: int = defaults.ADMIN_RETRY_BACKOFF_MS,
        retry_backoff_max_ms: int = defaults.ADMIN_RETRY_BACKOFF_MS_MAX,
        deadline_ms: int = defaults.ADMIN_DEADLINE_MS,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        security: ChannelSecurity | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._bootstrap = parse_bootstrap(bootstrap)
        self._timeout_s = request_timeout_ms / 1000
        self._retry_policy = RetryPolicy(
            attempts_max=max_attempts,
            backoff_ms_min=retry_backoff_ms,
            backoff_ms_max=max(retry_backoff_ms, retry_backoff_max_ms),
            deadline_ms=deadline_ms,
        )
        self._clock = clock
        self._channels = ChannelPool(
            security=client_security(
                tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token=token, security=security
            )
        )
        self._coordinator: str | None = None
        self._next_bootstrap = 0

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channels.close()

    # -- the calls -------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: Mapping[str, str] | None = None,
        *,
        validate_only: bool = False,
        replica_assignments: Mapping[int, Sequence[int]] | None = None,
        wait_for_leaders: bool = False,
        timeout_ms: int = 0,
    ) -> admin_pb2.TopicDescription:
        """Creates a topic. With wait_for_leaders, returns only once every partition's
        leader serves it (REQUEST_TIMED_OUT after timeout_ms; the topic exists then)."""
        request = admin_pb2.CreateTopicRequest(
            wait_for_leaders=wait_for_leaders,
            timeout_ms=timeout_ms,
            name=name,
            partition_count=partitions,
            replication_factor=replication_factor,
            configs=dict(configs or {}),
            validate_only=validate_only,
            replica_assignments=[
                admin_pb2.ReplicaAssignment(partition=p, replica_ids=list(r))
                for p, r in sorted((replica_assignments or {}).items())
            ],
        )
        response = await self._call(lambda s: s.CreateTopic, request, mutating=True)
        return response.topic

    async def delete_topic(self, name: str) -> str:
        """Deletes a topic; returns its id."""
        request = admin_pb2.DeleteTopicRequest(name=name)
        response = await self._call(lambda s: s.DeleteTopic, request, mutating=True)
        return str(response.topic_id)

    async def list_topics(
        self, page_size: int = defaults.LIST_TOPICS_PAGE_SIZE
    ) -> list[admin_pb2.TopicSummary]:
        """Every topic, by name, following pages (at most LIST_TOPICS_PAGES_MAX of them)."""
        topics: list[admin_pb2.TopicSummary] = []
        token = ""
        for _ in range(defaults.LIST_TOPICS_PAGES_MAX):
            request = admin_pb2.ListTopicsRequest(page_size=page_size, page_token=token)
            response = await self._call(lambda s: s.ListTopics, request)
            topics.extend(response.topics)
            token = response.next_page_token
            if not token:
                return topics
        pages = defaults.LIST_TOPICS_PAGES_MAX
        raise BrookError(Reason.INTERNAL, f"topic listing did not end within {pages} pages")

    async def describe_topic(self, name: str) -> admin_pb2.TopicDescription:
        request = admin_pb2.DescribeTopicRequest(name=name)
        response = await self._call(lambda s: s.DescribeTopic, request)
        return response.topic

    async def describe_cluster(self) -> admin_pb2.DescribeClusterResponse:
        return await self._call(lambda s: s.DescribeCluster, admin_pb2.DescribeClusterRequest())

    async def describe_configs(self, topic: str) -> list[admin_pb2.ConfigEntry]:
        request = admin_pb2.DescribeConfigsRequest(topic=topic)
        response = await self._call(lambda s: s.DescribeConfigs, request)
        return list(response.configs)

    async def alter_configs(
        self,
        topic: str,
        set_configs: Mapping[str, str] | None = None,
        delete: Iterable[str] = (),
        *,
        validate_only: bool = False,
    ) -> list[admin_pb2.ConfigEntry]:
        request = admin_pb2.AlterConfigsRequest(
            topic=topic,
            set=dict(set_configs or {}),
            delete=list(delete),
            validate_only=validate_only,
        )
        response = await self._call(lambda s: s.AlterConfigs, request, mutating=True)
        return list(response.configs)

    async def create_partitions(
        self, topic: str, partition_count: int, *, validate_only: bool = False
    ) -> admin_pb2.TopicDescription:
        request = admin_pb2.CreatePartitionsRequest(
            topic=topic, partition_count=partition_count, validate_only=validate_only
        )
        response = await self._call(lambda s: s.CreatePartitions, request, mutating=True)
        return response.topic

    async def elect_leaders(
        self,
        partitions: Iterable[tuple[str, int]] | None = None,
        election_type: str = "preferred",
    ) -> list[admin_pb2.ElectionResult]:
        """Runs preferred (default) or unclean elections; None means every partition."""
        if election_type not in ELECTION_TYPES:
            raise ValueError(f"election_type must be one of {', '.join(ELECTION_TYPES)}")
        request = admin_pb2.ElectLeadersRequest(
            election_type=ELECTION_TYPES[election_type],
            partitions=[common_pb2.PartitionRef(topic=t, partition=p) for t, p in partitions or ()],
        )
        response = await self._call(lambda s: s.ElectLeaders, request, mutating=True)
        return list(response.results)

    async def reassign_partitions(
        self, topic: str, reassignments: Mapping[int, Sequence[int]], *,
        validate_only: bool = False, throttle_bytes_per_s: int | None = None,
    ) -> list[admin_pb2.ReassignmentStatus]:  # fmt: skip
        """Starts (or, with an empty replica list, cancels) moves of `topic`'s partitions.
        `throttle_bytes_per_s` first sets the cluster-wide replication throttle (0
        removes it)."""
        request = admin_pb2.ReassignPartitionsRequest(
            topic=topic,
            reassignments=[
                admin_pb2.ReplicaAssignment(partition=p, replica_ids=list(r))
                for p, r in sorted(reassignments.items())
            ],
            validate_only=validate_only,
        )
        if throttle_bytes_per_s is not None:
            request.throttle_bytes_per_second = throttle_bytes_per_s
        response = await self._call(lambda s: s.ReassignPartitions, request, mutating=True)
        return list(response.reassignments)

    async def list_reassignments(self, topic: str = "") -> list[admin_pb2.ReassignmentStatus]:
        """Every move in progress (all pages), with each adding replica's progress."""
        return (await self.list_reassignments_with_throttle(topic))[0]

    async def list_reassignments_with_throttle(
        self, topic: str = "", *, page_size: int = 0
    ) -> tuple[list[admin_pb2.ReassignmentStatus], admin_pb2.ReplicationThrottle]:
        """(every move in progress, all pages; the throttle in force)."""
        found: list[admin_pb2.ReassignmentStatus] = []
        token = ""
        throttle = admin_pb2.ReplicationThrottle()
        while True:
            request = admin_pb2.ListReassignmentsRequest(
                page_size=page_size, page_token=token, topic=topic
            )
            response = await self._call(lambda s: s.ListReassignments, request)
            found.extend(response.reassignments)
            throttle = response.throttle
            token = response.next_page_token
            if not token:
                return found, throttle

    async def alter_replication_throttle(
        self, rate_bytes_per_s: int, *, node_id: int | None = None
    ) -> admin_pb2.ReplicationThrottle:
        """Sets the cluster-wide reassignment replication throttle (or `node_id`'s own
        rate); 0 removes it. Answers every rate after the change."""
        request = admin_pb2.AlterReplicationThrottleRequest(
            rate_bytes_per_second=rate_bytes_per_s
        )
        if node_id is not None:
            request.node_id = node_id
        response = await self._call(lambda s: s.AlterReplicationThrottle, request)
        return response.throttle

    async def describe_replication_throttle(self) -> admin_pb2.ReplicationThrottle:
        """The reassignment replication throttle's rates."""
        response = await self._call(
            lambda s: s.DescribeReplicationThrottle, admin_pb2.DescribeReplicationThrottleRequest()
        )
        return response.throttle

    # -- nodes and balancing (issue 13) ------------------------------------------------
    async def list_nodes(self) -> list[admin_pb2.NodeStatus]:
        """Every node the cluster knows, with its state (active, decommissioning, ...)."""
        response = await self._call(lambda s: s.ListNodes, admin_pb2.ListNodesRequest())
        return list(response.nodes)

    async def decommission_node(self, node_id: int) -> admin_pb2.NodeStatus:
        """Marks a node as leaving: the balancer moves everything off it (idempotent)."""
        request = admin_pb2.DecommissionNodeRequest(node_id=node_id)
        response = await self._call(lambda s: s.DecommissionNode, request, mutating=True)
        return response.node

    async def drain_leadership(
        self, node_id: int, hold_ms: int = 0
    ) -> admin_pb2.DrainLeadershipResponse:
        """Moves every leadership of `node_id` to other in-sync replicas before it stops
        (a controlled shutdown); preferred elections leave it alone for `hold_ms`."""
        request = admin_pb2.DrainLeadershipRequest(node_id=node_id, hold_ms=hold_ms)
        response: admin_pb2.DrainLeadershipResponse = await self._call(
            lambda s: s.DrainLeadership, request, mutating=True
        )
        return response

    async def recommission_node(self, node_id: int) -> admin_pb2.NodeStatus:
        """Makes a decommissioned node active again (idempotent)."""
        request = admin_pb2.RecommissionNodeRequest(node_id=node_id)
        response = await self._call(lambda s: s.RecommissionNode, request, mutating=True)
        return response.node

    async def rebalance_partitions(
        self, *, dry_run: bool = True, max_moves: int = 0,
        throttle_bytes_per_s: int | None = None,
    ) -> admin_pb2.RebalancePartitionsResponse:  # fmt: skip
        """The balancer's plan; with dry_run=False its moves are started (after
        `throttle_bytes_per_s`, when given, is set as the cluster-wide throttle)."""
        request = admin_pb2.RebalancePartitionsRequest(dry_run=dry_run, max_moves=max_moves)
        if throttle_bytes_per_s is not None:
            request.throttle_bytes_per_second = throttle_bytes_per_s
        return await self._call(lambda s: s.RebalancePartitions, request, mutating=not dry_run)

    # -- access control lists (issue 11; build them with brook.client.admin.acls) -------

    async def alter_client_quotas(
        self, quotas: Iterable[admin_pb2.ClientQuota]
    ) -> list[admin_pb2.ClientQuota]:
        """Replaces each named principal's quotas whole (unset fields: unlimited; all
        unset: the entry is removed); answers them as stored."""
        request = admin_pb2.AlterClientQuotasRequest(quotas=list(quotas))
        response = await self._call(lambda s: s.AlterClientQuotas, request)
        return list(response.quotas)

    async def describe_client_quotas(self, principal: str = "") -> list[admin_pb2.ClientQuota]:
        """Every quota entry (or only `principal`'s; "<default>" for the default)."""
        request = admin_pb2.DescribeClientQuotasRequest(principal=principal)
        response = await self._call(lambda s: s.DescribeClientQuotas, request)
        return list(response.quotas)

    async def create_acls(
        self, acls: Iterable[admin_pb2.AclBinding]
    ) -> list[admin_pb2.AclBinding]:
        """Stores ACLs (idempotent: an existing one stays); answers them as stored."""
        request = admin_pb2.CreateAclsRequest(acls=list(acls))
        response = await self._call(lambda s: s.CreateAcls, request)
        return list(response.acls)

    async def describe_acls(
        self, acl_filter: admin_pb2.AclFilter | None = None,
        page_size: int = defaults.LIST_TOPICS_PAGE_SIZE,
    ) -> list[admin_pb2.AclBinding]:  # fmt: skip
        """Every ACL the filter selects (all without one), following pages."""
        found: list[admin_pb2.AclBinding] = []
        token = ""
        for _ in range(defaults.LIST_TOPICS_PAGES_MAX):
            request = admin_pb2.DescribeAclsRequest(page_size=page_size, page_token=token)
            if acl_filter is not None:
                request.filter.CopyFrom(acl_filter)
            response = await self._call(lambda s: s.DescribeAcls, request)
            found.extend(response.acls)
            token = response.next_page_token
            if not token:
                return found
        pages = defaults.LIST_TOPICS_PAGES_MAX
        raise BrookError(Reason.INTERNAL, f"ACL listing did not end within {pages} pages")

    async def delete_acls(
        self, filters: Iterable[admin_pb2.AclFilter]
    ) -> list[admin_pb2.AclBinding]:
        """Deletes the ACLs any filter selects; answers what was deleted."""
        request = admin_pb2.DeleteAclsRequest(filters=list(filters))
        response = await self._call(lambda s: s.DeleteAcls, request, mutating=True)
        return list(response.deleted)

    async def get_metadata(self, topics: Iterable[str] = ()) -> metadata_pb2.GetMetadataResponse:
        """MetadataService.GetMetadata from the first bootstrap address that answers."""
        last: BrookError | None = None
        for address in self._bootstrap:
            stub = metadata_pb2_grpc.MetadataServiceStub(self._channels.get(address))
            try:
                return await stub.GetMetadata(
                    metadata_pb2.GetMetadataRequest(topics=list(topics)), timeout=self._timeout_s
                )
            except grpc.aio.AioRpcError as error:
                last = from_rpc_error(error)
        raise last or BrookError(Reason.UNAVAILABLE, "no bootstrap address")

    # -- routing -----------------------------------------------------------------------------

    def _target(self) -> str:
        if self._coordinator is not None:
            return self._coordinator
        address = self._bootstrap[self._next_bootstrap % len(self._bootstrap)]
        return address

    async def _call(
        self,
        method: Callable[[admin_pb2_grpc.AdminServiceStub], Callable[..., Awaitable[Any]]],
        request: Any,
        *,
        mutating: bool = False,
    ) -> Any:
        """One AdminService call on the active coordinator, redirects and fail-overs
        followed within the retry policy (see the module doc)."""

        async def attempt() -> Any:
            address = self._target()
            stub = admin_pb2_grpc.AdminServiceStub(self._channels.get(address))
            try:
                response = await method(stub)(request, timeout=self._timeout_s)
            except grpc.aio.AioRpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                if error.reason is not Reason.NOT_COORDINATOR:
                    self._coordinator = None  # it failed as the active one: find it afresh
                raise error from None
            self._coordinator = address
            return response

        return await call_with_retry(
            attempt,
            self._retry_policy,
            retriable=lambda error: _may_retry(error, mutating),
            on_redirect=self._follow_redirect,
            on_refresh=self._try_next_address,
            clock=self._clock,
        )

    async def _follow_redirect(self, error: BrookError) -> None:
        """A standby answered: go to the coordinator it names, else find the active one."""
        address = self._target()
        redirect = next((error.metadata[k] for k in _REDIRECT_KEYS if error.metadata.get(k)), None)
        log.debug("%s is a standby; redirect to %s", address, redirect)
        self._coordinator = redirect if redirect and redirect != address else None
        if self._coordinator is None:
            self._next_bootstrap += 1
            await self._learn_coordinator()

    def _try_next_address(self, _error: BrookError) -> None:
        """The coordinator is gone or moving: the next attempt asks the next bootstrap."""
        self._next_bootstrap += 1

    async def _learn_coordinator(self) -> None:
        """Asks GetMetadata where the active coordinator is (standbys serve metadata)."""
        try:
            metadata = await self.get_metadata()
        except BrookError:
            return
        if metadata.coordinator.address:
            self._coordinator = metadata.coordinator.address
