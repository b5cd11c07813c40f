"""Request-field bounds, checked before a servicer does any work.

Every string and repeated field of a request that can grow is checked against a limit
(from the process's `limits` module) at the top of the handler, so an oversized request is
refused with INVALID_ARGUMENT + ErrorInfo (reason INVALID_REQUEST unless the caller names
a more precise one) and changes nothing. Messages quote at most a short prefix of the
input (`quote`): an oversized value echoed into a status would make the trailer itself too
large, and the client would then get no ErrorInfo at all.

Thread-safety: pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized

from brook.errors import BrookError, Reason
from brook.structs import TopicPartition

# Characters of an input an error message may quote.
ECHO_CHARS_MAX = 64


def quote(value: str, chars_max: int = ECHO_CHARS_MAX) -> str:
    """repr() of `value`, cut to a prefix of `chars_max` characters with its full length."""
    if len(value) <= chars_max:
        return repr(value)
    return f"{value[:chars_max]!r}... ({len(value)} characters)"


def check_chars(
    field: str, value: str, chars_max: int, *, reason: Reason = Reason.INVALID_REQUEST
) -> None:
    """Refuses a string field longer than `chars_max` characters."""
    if len(value) > chars_max:
        raise BrookError(
            reason,
            f"{field} is {len(value)} characters; the limit is {chars_max}",
            {"field": field, "length": len(value), "limit": chars_max},
        )


def check_each_chars(
    field: str, values: Iterable[str], chars_max: int, *, reason: Reason = Reason.INVALID_REQUEST
) -> None:
    """Refuses a repeated string field with any item longer than `chars_max`."""
    for value in values:
        check_chars(field, value, chars_max, reason=reason)


def check_count(field: str, items: Sized, count_max: int) -> None:
    """Refuses a repeated (or map) field with more than `count_max` items."""
    if len(items) > count_max:
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"{field} has {len(items)} items; the limit is {count_max}",
            {"field": field, "count": len(items), "limit": count_max},
        )


def check_range(field: str, value: int, value_min: int, value_max: int) -> None:
    """Refuses an integer field outside value_min..value_max."""
    if not value_min <= value <= value_max:
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"{field} {value} is outside {value_min}..{value_max}",
            {"field": field, "value": value, "min": value_min, "max": value_max},
        )


def check_enum(field: str, value: int, allowed: Iterable[int]) -> None:
    """Refuses an enum value this server does not know (proto3 keeps unknown numbers)."""
    known = sorted(set(allowed))
    if value not in known:
        raise BrookError(
            Reason.INVALID_REQUEST,
            f"{field} {value} is not one of {known}",
            {"field": field, "value": value},
        )


def check_unique(field: str, keys: Iterable[TopicPartition]) -> None:
    """Refuses a request naming one partition twice (nothing is done for either)."""
    seen: set[TopicPartition] = set()
    for key in keys:
        if key in seen:
            raise BrookError(
                Reason.INVALID_REQUEST,
                f"{key} appears twice in {field}; name each partition once",
                {"field": field, "topic": key.topic, "partition": key.partition},
            )
        seen.add(key)
