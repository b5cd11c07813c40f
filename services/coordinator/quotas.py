"""AlterClientQuotas and DescribeClientQuotas (issue 11): the coordinator writes each
principal's quotas to etcd (services/metadata/quotas.py); every node enforces them from
its own watch-fed cache.

Thread-safety: one event loop (the AdminServicer serializes writes).
"""

from __future__ import annotations

from typing import Literal

from brook.errors import BrookError, Reason
from brook.services.common.bounds import check_count
from brook.services.common.quotas import QuotaConfig
from brook.services.metadata.quotas import QUOTA_DEFAULT, QuotaCache, check_principal
from brook.v1 import admin_pb2

# Entries one AlterClientQuotas may carry.
QUOTAS_PER_REQUEST_MAX = 100
# How long a write waits to see itself in the cache, so a describe right after sees it.
CATCH_UP_S = 5.0
_FIELDS: tuple[
    Literal["produce_bytes_per_s", "fetch_bytes_per_s", "requests_per_s", "streams_max",
            "connections_per_s"], ...
] = ("produce_bytes_per_s", "fetch_bytes_per_s", "requests_per_s", "streams_max",
     "connections_per_s")  # fmt: skip


def to_config(entry: admin_pb2.ClientQuota) -> QuotaConfig:
    """The entry's quotas, checked (positive, finite); INVALID_CONFIG otherwise."""
    return QuotaConfig.from_mapping(
        {name: getattr(entry, name) for name in _FIELDS if entry.HasField(name)}
    )


def to_entry(principal: str, config: QuotaConfig) -> admin_pb2.ClientQuota:
    entry = admin_pb2.ClientQuota(principal=principal)
    for name, value in config.to_mapping().items():
        setattr(entry, name, value)
    return entry


class QuotaAdmin:
    """The quota calls of AdminService, over the coordinator's QuotaCache."""

    def __init__(self, cache: QuotaCache) -> None:
        self.cache = cache

    async def alter(
        self, request: admin_pb2.AlterClientQuotasRequest
    ) -> admin_pb2.AlterClientQuotasResponse:
        if not request.quotas:
            raise BrookError(
                Reason.INVALID_REQUEST, "quotas names no principal", {"field": "quotas"}
            )
        check_count("quotas", request.quotas, QUOTAS_PER_REQUEST_MAX)
        principals = [check_principal(entry.principal) for entry in request.quotas]
        if len(set(principals)) != len(principals):
            raise BrookError(
                Reason.INVALID_REQUEST, "quotas names a principal twice", {"field": "quotas"}
            )
        # Every entry is checked before anything is written: a bad one changes nothing.
        configs = [to_config(entry) for entry in request.quotas]
        revision = 0
        for principal, config in zip(principals, configs, strict=True):
            revision = await self.cache.set(principal, config, len(self.cache))
        if not await self.cache.wait_for(lambda c: c.revision >= revision, CATCH_UP_S):
            raise BrookError(
                Reason.REQUEST_TIMED_OUT,
                "the quotas are stored but this coordinator's view has not caught up yet",
            )
        return admin_pb2.AlterClientQuotasResponse(
            quotas=[to_entry(p, c) for p, c in zip(principals, configs, strict=True)]
        )

    def describe(
        self, request: admin_pb2.DescribeClientQuotasRequest
    ) -> admin_pb2.DescribeClientQuotasResponse:
        wanted = check_principal(request.principal) if request.principal else None
        entries = sorted(self.cache.by_principal().items())
        return admin_pb2.DescribeClientQuotasResponse(
            quotas=[to_entry(p, c) for p, c in entries if wanted is None or p == wanted]
        )


__all__ = ["QUOTA_DEFAULT", "QuotaAdmin"]
