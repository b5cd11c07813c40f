"""The asyncio group admin client: GroupService calls on the active group manager.

GroupService is served by the active group manager, which clients find through
`GetMetadata` on the bootstrap coordinator. A call that fails retriably (NOT_COORDINATOR
from a standby, a manager fail-over, a refused connection) refreshes that metadata and is
retried within `brook.client.retry`'s bounds; `watch` reconnects its stream the same way.

Results are the API's protobuf messages (`brook.v1.groups_pb2`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from brook.client import defaults
from brook.client.metadata import ChannelPool, ClusterMetadata
from brook.client.retry import Retry, RetryPolicy, call_with_retry
from brook.errors import BrookError, Reason, from_rpc_error
from brook.transport import ChannelSecurity, client_security
from brook.v1 import groups_pb2, groups_pb2_grpc

GROUP_STATES: dict[str, groups_pb2.GroupState.ValueType] = {
    "empty": groups_pb2.GROUP_STATE_EMPTY,
    "reconciling": groups_pb2.GROUP_STATE_RECONCILING,
    "stable": groups_pb2.GROUP_STATE_STABLE,
    "dead": groups_pb2.GROUP_STATE_DEAD,
}

RETRY_POLICY = RetryPolicy(
    attempts_max=defaults.GROUP_ADMIN_ATTEMPTS_MAX,
    backoff_ms_min=defaults.GROUP_ADMIN_RETRY_BACKOFF_MS,
    backoff_ms_max=defaults.GROUP_ADMIN_RETRY_BACKOFF_MS_MAX,
    deadline_ms=defaults.GROUP_ADMIN_DEADLINE_MS,
)


def group_state_name(state: int) -> str:
    """ "STABLE" for GROUP_STATE_STABLE, and so on."""
    return groups_pb2.GroupState.Name(state).removeprefix("GROUP_STATE_")  # type: ignore[arg-type]


class GroupAdmin:
    """Consumer-group administration. Use `async with GroupAdmin(bootstrap) as admin:`."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        request_timeout_ms: int = defaults.GROUP_ADMIN_REQUEST_TIMEOUT_MS,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        security: ChannelSecurity | None = None,
        retry_policy: RetryPolicy = RETRY_POLICY,
    ) -> None:
        self._channels = ChannelPool(
            security=client_security(
                tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token=token, security=security
            )
        )
        self._metadata = ClusterMetadata(bootstrap, self._channels)
        self._request_timeout_s = request_timeout_ms / 1000
        self._retry_policy = retry_policy
        # Set by a failure that says the manager may have moved: the next call asks first.
        self._refresh_first = False

    async def __aenter__(self) -> GroupAdmin:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._metadata.close()
        await self._channels.close()

    # -- the calls -------------------------------------------------------------------------

    async def call(self, method: str, request: Any) -> Any:
        """`GroupService.<method>(request)` on the active manager, retried within bounds."""

        async def attempt() -> Any:
            stub = await self._stub()
            try:
                return await getattr(stub, method)(request, timeout=self._request_timeout_s)
            except grpc.aio.AioRpcError as rpc_error:
                raise from_rpc_error(rpc_error) from None

        return await call_with_retry(attempt, self._retry_policy, on_refresh=self._forget_manager)

    async def list_groups(self, states: Sequence[int] = ()) -> list[groups_pb2.GroupSummary]:
        """Every group (in these states, when given), following pages (bounded)."""
        groups: list[groups_pb2.GroupSummary] = []
        token = ""
        for _ in range(defaults.LIST_GROUPS_PAGES_MAX):
            page = await self.call(
                "ListGroups",
                groups_pb2.ListGroupsRequest(
                    page_size=defaults.LIST_GROUPS_PAGE_SIZE,
                    page_token=token,
                    states=list(states),  # type: ignore[arg-type]
                ),
            )
            groups.extend(page.groups)
            token = page.next_page_token
            if not token:
                break
        return groups

    async def describe(self, group_id: str) -> groups_pb2.GroupDescription:
        """Members, assignment, committed offsets and lag of one group."""
        response = await self.call(
            "DescribeGroup", groups_pb2.DescribeGroupRequest(group_id=group_id, include_lag=True)
        )
        return response.group

    async def reset_offsets(
        self, request: groups_pb2.ResetOffsetsRequest
    ) -> groups_pb2.ResetOffsetsResponse:
        """Moves an inactive group's committed offsets (or shows the move: `dry_run`)."""
        response: groups_pb2.ResetOffsetsResponse = await self.call("ResetOffsets", request)
        return response

    async def delete(self, group_id: str) -> None:
        """Deletes an empty group and its offsets."""
        await self.call("DeleteGroup", groups_pb2.DeleteGroupRequest(group_id=group_id))

    async def watch(
        self, group_id: str, lag_interval_ms: int
    ) -> AsyncIterator[groups_pb2.GroupDescription]:
        """Descriptions as the group changes; reconnects (bounded) after a fail-over.

        The retry budget starts afresh after every update: it bounds consecutive failures,
        not the failures of a watch that may run for days.
        """
        request = groups_pb2.WatchGroupRequest(group_id=group_id, lag_interval_ms=lag_interval_ms)
        retry = Retry(self._retry_policy, on_refresh=self._forget_manager)
        while True:
            stub = await self._stub()
            try:
                async for update in stub.WatchGroup(request):
                    retry.reset()
                    yield update.group
                    if update.group.state == groups_pb2.GROUP_STATE_DEAD:
                        return
                return
            except grpc.aio.AioRpcError as rpc_error:
                await retry.failed(from_rpc_error(rpc_error))

    # -- routing -----------------------------------------------------------------------------

    def _forget_manager(self, _error: BrookError) -> None:
        self._refresh_first = True

    async def _stub(self) -> groups_pb2_grpc.GroupServiceStub:
        if self._refresh_first or not self._metadata.group_manager_address:
            await self._metadata.refresh()
            self._refresh_first = False
        address = self._metadata.group_manager_address
        if not address:
            raise BrookError(Reason.COORDINATOR_NOT_AVAILABLE, "no active group manager is known")
        return groups_pb2_grpc.GroupServiceStub(self._channels.get(address))
