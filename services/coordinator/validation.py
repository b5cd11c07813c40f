"""Admin request validation: pure checks that raise BrookError with the reason to report.

Kept apart from the servicer so every rule is unit-tested without gRPC or etcd.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from brook.errors import BrookError, Reason
from brook.services.common.bounds import check_chars, quote
from brook.services.coordinator.limits import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    PAGE_TOKEN_CHARS_MAX,
    PARTITION_COUNT_MAX,
    REPLICATION_FACTOR_DEFAULT_MAX,
    REPLICATION_FACTOR_MAX,
    TOPIC_NAME_CHARS_MAX,
)
from brook.services.coordinator.placement import NodeLoad

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


def check_topic_name_length(name: str, field: str = "topic name") -> None:
    """The bound every request naming a topic gets before any lookup: 1 to 249 characters
    (INVALID_TOPIC_NAME; the message quotes no more than a short prefix)."""
    if not name:
        raise BrookError("INVALID_TOPIC_NAME", f"{field} is empty", {"topic": ""})
    check_chars(field, name, TOPIC_NAME_CHARS_MAX, reason=Reason.INVALID_TOPIC_NAME)


def validate_topic_name(name: str) -> None:
    """1 to 249 characters of [a-zA-Z0-9._-], not "." or ".."; INVALID_TOPIC_NAME."""
    check_topic_name_length(name)
    if name in (".", ".."):
        raise BrookError("INVALID_TOPIC_NAME", f"topic name {name!r} is reserved", {"topic": name})
    if not _TOPIC_NAME.match(name):
        raise BrookError(
            "INVALID_TOPIC_NAME",
            f"topic name {name!r} may only contain letters, digits, '.', '_' and '-'",
            {"topic": name},
        )


def validate_replica_ids(field: str, replica_ids: Sequence[int]) -> None:
    """A replica list no longer than REPLICATION_FACTOR_MAX (checked before any work)."""
    if len(replica_ids) > REPLICATION_FACTOR_MAX:
        raise BrookError(
            "INVALID_REPLICATION_FACTOR",
            f"{field} names {len(replica_ids)} replicas; the limit is {REPLICATION_FACTOR_MAX}",
            {"field": field, "limit": REPLICATION_FACTOR_MAX},
        )


def validate_partition_count(count: int) -> None:
    if not 1 <= count <= PARTITION_COUNT_MAX:
        raise BrookError(
            "INVALID_PARTITION_COUNT",
            f"partition count {count} is outside 1..{PARTITION_COUNT_MAX}",
            {"partition_count": count},
        )


def validate_replication_factor(factor: int, live_node_count: int) -> None:
    if factor < 1 or factor > live_node_count:
        raise BrookError(
            "INVALID_REPLICATION_FACTOR",
            f"replication factor {factor} is outside 1..{live_node_count}"
            f" ({live_node_count} live nodes)",
            {"replication_factor": factor, "live_nodes": live_node_count},
        )


def default_replication_factor(live_node_count: int) -> int:
    return max(1, min(REPLICATION_FACTOR_DEFAULT_MAX, live_node_count))


def validate_assignments(
    assignments: Mapping[int, Sequence[int]],
    partition_indexes: Collection[int],
    live_nodes: Collection[int],
) -> int:
    """Checks hand-placed replica lists; returns their common replication factor.

    One list per partition in `partition_indexes`, none for any other, all the same
    length, no node twice in a list, every node live.
    """
    expected = set(partition_indexes)
    given = set(assignments)
    if given != expected:
        missing = sorted(expected - given)[:10]
        extra = sorted(given - expected)[:10]
        raise BrookError(
            "INVALID_REQUEST",
            f"replica assignments must name each new partition exactly once"
            f" (missing {missing}, unexpected {extra})",
        )
    factors = {len(replicas) for replicas in assignments.values()}
    if len(factors) != 1:
        raise BrookError(
            "INVALID_REPLICATION_FACTOR",
            "replica assignments have different lengths; every partition needs the same"
            " replication factor",
        )
    factor = factors.pop()
    if factor < 1:
        raise BrookError("INVALID_REPLICATION_FACTOR", "a replica assignment is empty")
    for partition, replicas in sorted(assignments.items()):
        if len(set(replicas)) != len(replicas):
            raise BrookError(
                "INVALID_REQUEST",
                f"partition {partition}: a node appears twice in {list(replicas)}",
                {"partition": partition},
            )
        dead = [r for r in replicas if r not in live_nodes]
        if dead:
            raise BrookError(
                "NODE_NOT_FOUND",
                f"partition {partition}: nodes {dead} are not live",
                {"partition": partition, "node_ids": ",".join(map(str, dead))},
            )
    return factor


def page_size(requested: int) -> int:
    """0 means the default; above the maximum is lowered to it (AIP-158)."""
    if requested < 0:
        raise BrookError("INVALID_REQUEST", f"page_size {requested} is negative")
    if requested == 0:
        return PAGE_SIZE_DEFAULT
    return min(requested, PAGE_SIZE_MAX)


def encode_page_token(after_name: str) -> str:
    """An opaque token: where the next page starts (after this topic name)."""
    payload = json.dumps({"v": 1, "after": after_name}).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    """The name a token resumes after ("" for the first page); INVALID_PAGE_TOKEN."""
    if not token:
        return ""
    if len(token) > PAGE_TOKEN_CHARS_MAX:
        raise BrookError("INVALID_PAGE_TOKEN", "page_token is not one this server issued")
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data["after"], str):
            raise ValueError("unknown token layout")
        return str(data["after"])
    except (ValueError, KeyError, TypeError) as error:
        raise BrookError(
            "INVALID_PAGE_TOKEN",
            f"page_token is not one this server issued ({quote(str(error))})",
        ) from None


def page(names: Sequence[str], after: str, size: int) -> tuple[list[str], str]:
    """One page of sorted names after `after`, and the next token ("" on the last page)."""
    remaining = [n for n in sorted(names) if n > after]
    chosen = remaining[:size]
    next_token = encode_page_token(chosen[-1]) if len(remaining) > size else ""
    return chosen, next_token


def check_replicas_per_node(
    load: Mapping[int, NodeLoad], new_replica_lists: Sequence[Sequence[int]], per_node_max: int
) -> None:
    """Refuses new partitions that would put more than `per_node_max` replicas on a node
    (INVALID_PARTITION_COUNT, naming the node, its count and the cure)."""
    added: Counter[int] = Counter(node for replicas in new_replica_lists for node in replicas)
    for node_id, count in sorted(added.items()):
        current = load[node_id].replicas if node_id in load else 0
        if current + count > per_node_max:
            raise BrookError(
                Reason.INVALID_PARTITION_COUNT,
                f"these partitions would put {current + count} replicas on node {node_id}"
                f" (it has {current}); a node carries at most {per_node_max}: add nodes,"
                " use fewer partitions or a lower replication factor",
                {"node_id": node_id, "replicas": current + count, "max": per_node_max},
            )
