"""Reading the one field authorization needs from a request that is still bytes.

The record API's ProduceRecords arrives unparsed (its records are counted on the wire
first); `produce_records_topic` finds its topic (field 1) the way protobuf would: the
last occurrence wins, so a request naming a topic twice is checked for the topic it will
be parsed as. The scan skips each top-level field by its length (records are never
looked into) and stops after `FIELDS_MAX` fields.

Thread-safety: pure functions.
"""

from __future__ import annotations

from brook.errors import BrookError, Reason
from brook.wire import MalformedWire, read_varint

# ProduceRecordsRequest.topic (protos/brook/v1/record_service.proto).
PRODUCE_RECORDS_TOPIC_FIELD = 1
# Top-level fields scanned at most: 10,000 records and a few head fields.
FIELDS_MAX = 10_100
# The longest topic name any process accepts.
TOPIC_CHARS_MAX = 249

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _bad(message: str) -> BrookError:
    return BrookError(Reason.INVALID_REQUEST, f"not a ProduceRecordsRequest: {message}")


def produce_records_topic(data: bytes) -> str:
    """The topic a ProduceRecordsRequest names ("" when none); INVALID_REQUEST when the
    bytes are malformed, hold too many fields, or name a topic that is too long."""
    position, end = 0, len(data)
    found: tuple[int, int] | None = None
    fields = 0
    try:
        while position < end:
            fields += 1
            if fields > FIELDS_MAX:
                raise BrookError(Reason.INVALID_REQUEST,
                                 f"more than {FIELDS_MAX} fields in a ProduceRecordsRequest",
                                 {"field": "records"})  # fmt: skip
            key, position = read_varint(data, position, end)
            number, wire = key >> 3, key & 7
            if wire == _VARINT:
                _, position = read_varint(data, position, end)
            elif wire == _LENGTH:
                length, start = read_varint(data, position, end)
                position = start + length
                if number == PRODUCE_RECORDS_TOPIC_FIELD:
                    found = (start, position)
            elif wire == _FIXED64:
                position += 8
            elif wire == _FIXED32:
                position += 4
            else:
                raise _bad(f"field {number} has unsupported wire type {wire}")
            if position > end:
                raise _bad(f"field {number} runs past the end")
    except MalformedWire as error:
        raise _bad(str(error)) from None
    if found is None:
        return ""
    start, stop = found
    if stop - start > 4 * TOPIC_CHARS_MAX:
        raise BrookError(Reason.INVALID_REQUEST, f"topic is longer than {TOPIC_CHARS_MAX}"
                         " characters", {"field": "topic"})  # fmt: skip
    try:
        topic = bytes(data[start:stop]).decode()
    except UnicodeDecodeError:
        raise _bad("topic is not UTF-8") from None
    if len(topic) > TOPIC_CHARS_MAX:
        raise BrookError(Reason.INVALID_REQUEST, f"topic is longer than {TOPIC_CHARS_MAX}"
                         " characters", {"field": "topic"})  # fmt: skip
    return topic
