"""Client quotas in etcd (issue 11): the store the coordinator writes, the cache every
process enforces from.

One key per principal (`Keys.quota`), `<default>` for the cluster default:

    /brook/<cluster>/quotas/<principal>      {"produce_bytes_per_s": 1048576, ...}

`QuotaControl` keeps a process's `Quotas` (services/common/quotas.py) in step with the
keys through a `PrefixCache` watch, so enforcement never calls etcd. Writes are fenced on
the coordinator role, as ACL and topic writes are.

Thread-safety: one event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from urllib.parse import unquote

import aetcd.rpc

from brook.clock import SYSTEM_CLOCK, Clock
from brook.errors import BrookError, Reason
from brook.services.common.principal import Principal
from brook.services.common.quotas import UNLIMITED, QuotaConfig, Quotas
from brook.services.metadata.prefix_cache import PrefixCache
from brook.services.metadata.store import MetadataStore

log = logging.getLogger("brook.metadata.quotas")

QUOTA_DEFAULT = "<default>"
# Principals with their own quotas (each process keeps them all in memory).
QUOTA_ENTRIES_MAX = 10_000


def config_from_json(data: bytes) -> QuotaConfig:
    values = json.loads(data)
    if not isinstance(values, dict):
        raise ValueError("a quota record is a JSON object")
    return QuotaConfig.from_mapping(values)


def check_principal(principal: str) -> str:
    """`user:NAME`, `node:ID`, `anonymous` or `<default>`; INVALID_REQUEST otherwise."""
    if principal == QUOTA_DEFAULT:
        return principal
    try:
        return str(Principal.parse(principal))
    except ValueError as error:
        raise BrookError(
            Reason.INVALID_REQUEST, f"{error} (or {QUOTA_DEFAULT} for the cluster default)",
            {"field": "principal"},
        ) from None


class QuotaCache(PrefixCache[QuotaConfig]):
    """Every principal's quotas, fed by an etcd watch."""

    def __init__(self, store: MetadataStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(store, store.keys.quotas_prefix, config_from_json, "quota", clock=clock)

    def by_principal(self) -> dict[str, QuotaConfig]:
        prefix = self.prefix.decode()
        return {unquote(key.decode()[len(prefix):]): config for key, config in self.values.items()}

    async def set(self, principal: str, config: QuotaConfig, present: int) -> int:
        """Stores `principal`'s quotas (all of them: unset rates become unlimited), or
        deletes its key when `config` is unlimited. Answers the etcd revision."""
        key = self.store.keys.quota(check_principal(principal))
        if config == UNLIMITED:
            op = aetcd.rpc.RequestOp(request_delete_range=aetcd.rpc.DeleteRangeRequest(key=key))
        else:
            if key not in self.values and present >= QUOTA_ENTRIES_MAX:
                raise BrookError(
                    Reason.INVALID_REQUEST,
                    f"a cluster holds quotas for at most {QUOTA_ENTRIES_MAX} principals; use"
                    f" the {QUOTA_DEFAULT} quota for the rest",
                    {"limit": QUOTA_ENTRIES_MAX},
                )
            value = json.dumps(config.to_mapping(), sort_keys=True).encode()
            op = aetcd.rpc.RequestOp(request_put=aetcd.rpc.PutRequest(key=key, value=value))
        # Fenced on the coordinator role (the store's write path; same package).
        response = await self.store._write_txn([], [op])
        return int(response.header.revision)


class QuotaControl:
    """A process's quota enforcement: the `Quotas` its servicers call, kept in step with
    etcd by a `QuotaCache`."""

    def __init__(self, store: MetadataStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.quotas = Quotas(clock)
        self.cache = QuotaCache(store, clock=clock)
        self.cache.add_listener(self._apply)
        # What was last handed to `quotas` (None: nothing yet).
        self._applied: tuple[dict[str, QuotaConfig], QuotaConfig] | None = None

    async def start(self) -> None:
        await self.cache.start()

    async def stop(self) -> None:
        await self.cache.stop()

    def _apply(self) -> None:
        configs: Mapping[str, QuotaConfig] = self.cache.by_principal()
        default = configs.get(QUOTA_DEFAULT, UNLIMITED)
        own = {p: c for p, c in configs.items() if p != QUOTA_DEFAULT}
        if self._applied == (own, default):
            # A reload that changed nothing (the cache reloads after every watch failure,
            # say an etcd pause): `set_configs` would refill every bucket, forgiving what
            # each throttled principal still owes.
            return
        self._applied = (own, default)
        self.quotas.set_configs(own, default)
        log.info("quotas: %d principals, default %s", len(configs), default.to_mapping() or "none")
