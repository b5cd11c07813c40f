"""The record API's pure core (services/node/record_api.py), without a network: scanning
and bounding ProduceRecords requests on the wire, placing records on partitions (murmur2,
keyless in turn, the request's partition), one batch per partition that the kernel codec
reads back exactly, the per-record answers, ReadRecords' bounds and the decoded pages."""

from __future__ import annotations

import time

import pytest

from brook import codec
from brook.clock import ManualClock
from brook.errors import BrookError
from brook.partitioner import partition_for_key
from brook.records import ConsumerRecord
from brook.services.metadata.model import NO_LEADER, NodeInfo, PartitionRecord, TopicRecord
from brook.services.node.config import NodeLimits
from brook.services.node.data_path import Closing
from brook.services.node.record_api import (
    PRODUCE_RECORDS_MAX,
    READ_BYTES_DEFAULT,
    READ_BYTES_MAX,
    READ_RECORDS_DEFAULT,
    KeylessPartitions,
    PartitionOutcome,
    ProduceSettings,
    RecordBounds,
    Start,
    check_produce_head,
    consumed,
    ms_of,
    page_of,
    prepare_records,
    produce_failure,
    produced_response,
    read_answer,
    read_params,
    record_bytes,
    scan_produce_request,
    timestamp_of,
)
from brook.services.node.record_service import PeerChannels, RecordRouter, Route, server_error
from brook.v1 import record_service_pb2 as rs
from brook.v1 import records_pb2, storage_pb2
from brook.wire import varint

NOW_MS = 1_700_000_000_000
BOUNDS = RecordBounds()


def settings(**changes: object) -> ProduceSettings:
    values: dict[str, object] = {
        "topic": "t",
        "partition_count": 6,
        "fixed_partition": None,
        "keyless_partition": 4,
        "now_ms": NOW_MS,
        "timestamp_max_ms": NOW_MS + 3_600_000,
        "codec": codec.NONE,
        "max_batch_bytes": 8 << 20,
        "bounds": BOUNDS,
    }
    values.update(changes)
    return ProduceSettings(**values)  # type: ignore[arg-type]


def request_bytes(records: list[rs.PlainRecord], **head: object) -> bytes:
    return rs.ProduceRecordsRequest(topic="t", records=records, **head).SerializeToString()  # type: ignore[arg-type]


def prepare(records: list[rs.PlainRecord], **changes: object):  # type: ignore[no-untyped-def]
    data = request_bytes(records)
    scanned = scan_produce_request(data)
    return prepare_records(data, scanned.spans, settings(**changes))


def reason_of(error: pytest.ExceptionInfo[BrookError]) -> str:
    return str(error.value.reason)


def decoded(batch: codec.WireBatch, base_offset: int = 0) -> list[ConsumerRecord]:
    message = batch.to_message()
    message.base_offset = base_offset
    return codec.decode_batch(message, "t", 0)


# -- scanning ------------------------------------------------------------------------------
def test_scan_reads_the_head_and_finds_every_record() -> None:
    data = request_bytes(
        [rs.PlainRecord(value_text=str(i)) for i in range(3)],
        partition=0,
        acks=storage_pb2.ACKS_LEADER,
        timeout_ms=500,
        compression=records_pb2.COMPRESSION_CODEC_ZSTD,
        client_id="me",
    )
    scanned = scan_produce_request(data)
    head = scanned.head
    assert (head.topic, head.partition, head.acks, head.timeout_ms, head.client_id) == (
        "t",
        0,
        storage_pb2.ACKS_LEADER,
        500,
        "me",
    )
    assert head.HasField("partition") and not head.records
    assert len(scanned.spans) == 3
    for index, (_tag, start, end) in enumerate(scanned.spans):
        assert rs.PlainRecord.FromString(data[start:end]).value_text == str(index)


def test_scan_refuses_more_than_10000_records_without_parsing_them() -> None:
    """64 MiB of empty records take protobuf ~15 s to parse; the scan stops at 10,001."""
    data = b"\x1a\x00" * (32 << 20)
    started = time.perf_counter()
    with pytest.raises(BrookError) as error:
        scan_produce_request(data)
    assert time.perf_counter() - started < 0.2
    assert reason_of(error) == "INVALID_REQUEST"
    assert error.value.metadata["limit"] == str(PRODUCE_RECORDS_MAX)
    assert len(scan_produce_request(b"\x1a\x00" * PRODUCE_RECORDS_MAX).spans) == 10_000


@pytest.mark.parametrize("data", [b"\x1a\x05ab", b"\x1a", b"\x00\x01", b"\x1d\x00\x00\x00\x00"])
def test_scan_refuses_malformed_bytes(data: bytes) -> None:
    with pytest.raises(BrookError) as error:
        scan_produce_request(data)
    assert reason_of(error) == "INVALID_REQUEST"


def test_scan_refuses_a_huge_topic_before_parsing_it() -> None:
    data = rs.ProduceRecordsRequest(topic="x" * (1 << 20)).SerializeToString()
    with pytest.raises(BrookError) as error:
        scan_produce_request(data)
    assert reason_of(error) == "INVALID_REQUEST"
    assert len(error.value.message) < 300  # the input is not echoed


def head_of(**fields: object) -> rs.ProduceRecordsRequest:
    return rs.ProduceRecordsRequest(**{"topic": "t", **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("head", "count", "reason"),
    [
        (head_of(topic=""), 1, "INVALID_REQUEST"),
        (head_of(topic="x" * 250), 1, "INVALID_REQUEST"),
        (head_of(), 0, "INVALID_REQUEST"),
        (head_of(timeout_ms=-1), 1, "INVALID_REQUEST"),
        (head_of(timeout_ms=300_001), 1, "INVALID_REQUEST"),
        (head_of(acks=7), 1, "INVALID_REQUEST"),
        (head_of(compression=9), 1, "INVALID_REQUEST"),
        (head_of(client_id="c" * 256), 1, "INVALID_REQUEST"),
        (head_of(partition=-1), 1, "PARTITION_NOT_FOUND"),
    ],
)
def test_head_checks(head: rs.ProduceRecordsRequest, count: int, reason: str) -> None:
    with pytest.raises(BrookError) as error:
        check_produce_head(head, count, BOUNDS)
    assert reason_of(error) == reason


def test_head_within_bounds_passes() -> None:
    check_produce_head(head_of(timeout_ms=300_000, client_id="c" * 255, partition=0), 1, BOUNDS)
    check_produce_head(head_of(topic="x" * 249), 10_000, BOUNDS)


# -- placing and encoding ----------------------------------------------------------------------
def test_keyed_records_land_on_murmur2_keyless_together_in_order() -> None:
    records = [rs.PlainRecord(key_text=f"user-{i}", value_text=f"v{i}") for i in range(50)]
    records.insert(10, rs.PlainRecord(value=b"keyless-a"))
    records.append(rs.PlainRecord(value=b"keyless-b"))
    prepared = prepare(records)
    assert prepared.uses_keyless
    by_partition = {batch.partition: decoded(batch.wire) for batch in prepared.batches}
    for record, (partition, position) in zip(records, prepared.placements, strict=True):
        if record.WhichOneof("key_kind"):
            assert partition == partition_for_key(record.key_text.encode(), 6)
            assert by_partition[partition][position].key == record.key_text.encode()
        else:
            assert partition == 4
            assert by_partition[partition][position].key is None
        got = by_partition[partition][position]
        assert got.value == (record.value or record.value_text.encode())
    for partition, got in by_partition.items():  # request order inside each batch
        sent = [r for r, (p, _) in zip(records, prepared.placements, strict=True) if p == partition]
        assert [g.value for g in got] == [r.value or r.value_text.encode() for r in sent]


def test_a_request_partition_takes_every_record_and_keyed_requests_keep_the_turn() -> None:
    records = [rs.PlainRecord(key=b"k%d" % i, value=b"v") for i in range(20)]
    prepared = prepare(records, fixed_partition=2)
    assert {p for p, _ in prepared.placements} == {2}
    assert [pos for _, pos in prepared.placements] == list(range(20))
    assert not prepare(records).uses_keyless


def test_encoded_batch_reads_back_exactly() -> None:
    """Keys (bytes, text, empty, none), values, headers (bytes, text, empty) and
    timestamps come back from the kernel codec exactly as sent."""
    records = [
        rs.PlainRecord(
            key=b"\x00\xffk",
            value=b"\x01\x02",
            timestamp_ms=1234,
            headers=[
                rs.PlainHeader(key="h", value=b"\xfe"),
                rs.PlainHeader(key="h", value_text="two"),
                rs.PlainHeader(key="empty"),
            ],
        ),
        rs.PlainRecord(key_text="ключ", value_text="значение"),
        rs.PlainRecord(key=b"", value=b""),
        rs.PlainRecord(),
    ]
    prepared = prepare(records, fixed_partition=0)
    (batch,) = prepared.batches
    got = decoded(batch.wire, base_offset=7)
    assert [(r.offset, r.key, r.value, r.headers, r.timestamp_ms) for r in got] == [
        (7, b"\x00\xffk", b"\x01\x02", [("h", b"\xfe"), ("h", b"two"), ("empty", b"")], 1234),
        (8, "ключ".encode(), "значение".encode(), [], NOW_MS),
        (9, b"", b"", [], NOW_MS),
        (10, None, b"", [], NOW_MS),
    ]
    assert prepared.timestamps == [1234, NOW_MS, NOW_MS, NOW_MS]
    assert batch.wire.to_message().crc32c == codec.crc32c(batch.wire.to_message().records)


@pytest.mark.parametrize("name", ["zstd", "lz4", "gzip"])
def test_compressed_batches_read_back(name: str) -> None:
    records = [rs.PlainRecord(key_text="k", value=b"abc" * 1000) for _ in range(20)]
    prepared = prepare(records, fixed_partition=1, codec=codec.codec_from_name(name))
    (batch,) = prepared.batches
    message = batch.wire.to_message()
    assert message.compression == codec.codec_from_name(name)
    assert len(message.records) < 60_000
    assert [r.value for r in codec.decode_batch(message, "t", 1)] == [b"abc" * 1000] * 20


def test_many_records_parse_in_chunks_in_order() -> None:
    records = [rs.PlainRecord(value=b"%d" % i) for i in range(PRODUCE_RECORDS_MAX)]
    started = time.perf_counter()
    prepared = prepare(records, fixed_partition=0)
    elapsed = time.perf_counter() - started
    (batch,) = prepared.batches
    assert [r.value for r in decoded(batch.wire)] == [b"%d" % i for i in range(10_000)]
    assert elapsed < 2.0  # ~30 ms on the dev VM; a loose bound against accidents


def test_head_fields_between_records_do_not_disturb_chunks() -> None:
    first = rs.ProduceRecordsRequest(records=[rs.PlainRecord(value=b"a")]).SerializeToString()
    middle = rs.ProduceRecordsRequest(topic="t", client_id="c").SerializeToString()
    last = rs.ProduceRecordsRequest(records=[rs.PlainRecord(value=b"b")]).SerializeToString()
    data = first + middle + last
    scanned = scan_produce_request(data)
    assert scanned.head.topic == "t" and len(scanned.spans) == 2
    prepared = prepare_records(data, scanned.spans, settings(fixed_partition=0))
    assert [r.value for r in decoded(prepared.batches[0].wire)] == [b"a", b"b"]


def test_headers_per_record_are_counted_on_the_wire_before_parsing() -> None:
    fine = rs.PlainRecord(headers=[rs.PlainHeader(key="h")] * 100, value=b"*" * 5000)
    prepare([fine])  # 5,000 header tag bytes in the value: counted exactly, 100 headers
    over = rs.PlainRecord(headers=[rs.PlainHeader(key="h")] * 101)
    with pytest.raises(BrookError) as error:
        prepare([fine, over])
    assert reason_of(error) == "INVALID_REQUEST"
    assert error.value.metadata["field"] == "records[1].headers"
    # A million headers in one record: refused after counting 101 of them, no parse.
    huge = b"\x1a" + varint(2 << 20) + b"\x2a\x00" * (1 << 20)
    data = rs.ProduceRecordsRequest(topic="t").SerializeToString() + huge
    started = time.perf_counter()
    with pytest.raises(BrookError):
        prepare_records(data, scan_produce_request(data).spans, settings())
    assert time.perf_counter() - started < 0.2


def test_headers_per_request_and_header_names_are_bounded() -> None:
    bounds = RecordBounds(headers_per_request_max=150, header_key_chars_max=8)
    records = [rs.PlainRecord(headers=[rs.PlainHeader(key="h")] * 100)] * 2
    with pytest.raises(BrookError) as error:
        prepare(records, bounds=bounds)
    assert error.value.metadata["field"] == "records.headers"
    with pytest.raises(BrookError) as error:
        prepare([rs.PlainRecord(headers=[rs.PlainHeader(key="x" * 9)])], bounds=bounds)
    assert error.value.metadata["field"] == "records[0].headers.key"


@pytest.mark.parametrize("timestamp_ms", [0, -5, NOW_MS + 3_600_001])
def test_timestamps_outside_the_window_are_refused(timestamp_ms: int) -> None:
    with pytest.raises(BrookError) as error:
        prepare([rs.PlainRecord(value=b"ok"), rs.PlainRecord(timestamp_ms=timestamp_ms)])
    assert reason_of(error) == "INVALID_REQUEST"
    assert error.value.metadata["field"] == "records[1].timestamp_ms"


def test_a_batch_over_max_batch_bytes_is_refused_whole() -> None:
    records = [rs.PlainRecord(key_text=f"k{i}", value=b"x" * 300) for i in range(40)]
    with pytest.raises(BrookError) as error:
        prepare(records, max_batch_bytes=1000)
    assert reason_of(error) == "BATCH_TOO_LARGE"
    assert int(error.value.metadata["batch_bytes"]) > 1000
    # Compressed below the bound: accepted.
    prepare([rs.PlainRecord(value=b"x" * 5000)], max_batch_bytes=1000, codec=codec.ZSTD)


def test_keyless_partitions_rotate_per_topic_among_available() -> None:
    keyless = KeylessPartitions(topics_max=2)
    chosen = []
    for _ in range(4):
        chosen.append(keyless.peek("a", 3))
        keyless.commit("a")
    assert chosen == [0, 1, 2, 0]
    assert keyless.peek("a", 3) == keyless.peek("a", 3)  # peek takes no turn
    assert keyless.peek("b", 5, available=[3, 4]) == 3
    keyless.commit("b")
    assert keyless.peek("b", 5, available=[3, 4]) == 4
    keyless.commit("c")  # a third topic: the table starts over, still bounded
    assert keyless.peek("a", 3) == 0


# -- answers ---------------------------------------------------------------------------------
def test_produced_response_one_result_per_record_in_order() -> None:
    records = [rs.PlainRecord(key_text=f"k{i}", value=b"v") for i in range(30)]
    prepared = prepare(records)
    partitions = sorted({p for p, _ in prepared.placements})
    failed = partitions[0]
    outcomes = {p: PartitionOutcome(base_offset=100 * p) for p in partitions}
    outcomes[failed] = PartitionOutcome(error=BrookError("NOT_ENOUGH_REPLICAS", "isr too small"))
    response = produced_response(prepared, outcomes)
    assert len(response.results) == 30
    for result, (partition, position) in zip(response.results, prepared.placements, strict=True):
        assert result.partition == partition
        if partition == failed:
            assert result.error.error_info.reason == "NOT_ENOUGH_REPLICAS"
            assert not result.HasField("offset")
        else:
            assert result.offset == 100 * partition + position
            assert result.timestamp_ms == NOW_MS
            assert result.timestamp.ToMilliseconds() == NOW_MS
    assert produce_failure(response, prepared, outcomes) is None
    every = {p: outcomes[failed] for p in partitions}
    all_failed = produced_response(prepared, every)
    # Too large for a status trailer: the call still fails, without the response.
    failure = produce_failure(all_failed, prepared, every)
    assert failure is not None and failure.reason == "NOT_ENOUGH_REPLICAS"
    assert failure.response is None
    one = prepare([rs.PlainRecord(value=b"a")])
    small = produced_response(one, {4: outcomes[failed]})
    failure = produce_failure(small, one, {4: outcomes[failed]})
    assert failure is not None and failure.response == small


def test_acks_none_answers_offset_minus_one() -> None:
    prepared = prepare([rs.PlainRecord(value=b"a"), rs.PlainRecord(value=b"b")])
    response = produced_response(prepared, {4: PartitionOutcome(base_offset=-1)})
    assert [r.offset for r in response.results] == [-1, -1]


def test_server_error_never_answers_a_client_only_reason() -> None:
    import grpc

    transport = BrookError("TRANSPORT", "UNAVAILABLE: connection refused")
    transport.code = grpc.StatusCode.UNAVAILABLE
    assert server_error(transport).reason == "LEADER_NOT_AVAILABLE"
    transport.code = grpc.StatusCode.DEADLINE_EXCEEDED
    assert server_error(transport).reason == "REQUEST_TIMED_OUT"
    kept = BrookError("NOT_LEADER", "moved")
    assert server_error(kept) is kept


# -- read ------------------------------------------------------------------------------------
def test_read_params_defaults_and_starts() -> None:
    params = read_params(rs.ReadRecordsRequest(topic="t", partition=2))
    assert (params.start, params.max_records, params.max_bytes, params.max_wait_ms) == (
        Start.EARLIEST,
        READ_RECORDS_DEFAULT,
        READ_BYTES_DEFAULT,
        0,
    )
    assert read_params(rs.ReadRecordsRequest(topic="t", offset=0)).start is Start.OFFSET
    by_time = read_params(rs.ReadRecordsRequest(topic="t", timestamp_ms=5))
    assert (by_time.start, by_time.value) == (Start.TIMESTAMP, 5)
    stamp = rs.ReadRecordsRequest(topic="t")
    stamp.timestamp.FromJsonString("2026-12-01T09:30:00.250Z")
    assert read_params(stamp).value == 1_796_117_400_250
    latest = rs.ReadRecordsRequest(topic="t", position=rs.READ_POSITION_LATEST)
    assert read_params(latest).start is Start.LATEST
    unspecified = rs.ReadRecordsRequest(topic="t", position=rs.READ_POSITION_UNSPECIFIED)
    assert read_params(unspecified).start is Start.EARLIEST


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"topic": ""}, "INVALID_REQUEST"),
        ({"topic": "x" * 250}, "INVALID_REQUEST"),
        ({"partition": -1}, "PARTITION_NOT_FOUND"),
        ({"max_records": 10_001}, "INVALID_REQUEST"),
        ({"max_records": -1}, "INVALID_REQUEST"),
        ({"max_wait_ms": -1}, "INVALID_REQUEST"),
        ({"max_wait_ms": 30_001}, "INVALID_REQUEST"),
        ({"max_bytes": READ_BYTES_MAX + 1}, "INVALID_REQUEST"),
        ({"timestamp_ms": -1}, "INVALID_REQUEST"),
        ({"position": 9}, "INVALID_REQUEST"),
    ],
)
def test_read_params_bounds(fields: dict[str, object], reason: str) -> None:
    request = rs.ReadRecordsRequest(**{"topic": "t", **fields})  # type: ignore[arg-type]
    with pytest.raises(BrookError) as error:
        read_params(request)
    assert reason_of(error) == reason


def test_timestamps_convert_both_ways_within_range() -> None:
    assert timestamp_of(1_500).ToMilliseconds() == 1_500  # type: ignore[union-attr]
    assert timestamp_of(-1).ToMilliseconds() == -1  # type: ignore[union-attr]
    assert timestamp_of(1 << 62) is None
    bad = rs.ReadRecordsRequest(topic="t")
    bad.timestamp.nanos = -1
    with pytest.raises(BrookError):
        ms_of(bad.timestamp, "timestamp")


def stored(values: list[bytes], base_offset: int, **kwargs: object) -> records_pb2.RecordBatch:
    batch = codec.encode_batch(values, [NOW_MS] * len(values), **kwargs)  # type: ignore[arg-type]
    batch.base_offset = base_offset
    batch.partition_leader_epoch = 3
    return batch


def page(batches: list[records_pb2.RecordBatch], offset: int, **limits: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {"max_records": 100, "max_bytes": 1 << 20, "as_text": False}
    values.update(limits)
    return page_of(batches, "t", 0, offset, **values)  # type: ignore[arg-type]


def test_page_skips_below_the_offset_and_continues_across_batches() -> None:
    batches = [stored([b"a", b"b", b"c"], 10), stored([b"d", b"e"], 13)]
    got = page(batches, 11)
    assert [(r.offset, r.value) for r in got.records] == [
        (11, b"b"),
        (12, b"c"),
        (13, b"d"),
        (14, b"e"),
    ]
    assert got.next_offset == 15
    assert got.records[0].leader_epoch == 3
    assert page([], 7).next_offset == 7


def test_page_respects_max_records_and_stops_decoding() -> None:
    corrupt = stored([b"z"], 3)
    corrupt.crc32c ^= 1
    got = page([stored([b"a", b"b", b"c"], 0), corrupt], 0, max_records=2)
    assert [r.value for r in got.records] == [b"a", b"b"] and got.next_offset == 2
    with pytest.raises(BrookError) as error:
        page([stored([b"a"], 0), corrupt], 0)
    assert reason_of(error) == "CORRUPT_BATCH"


def test_page_respects_max_bytes_but_returns_at_least_one_record() -> None:
    batches = [stored([b"x" * 600, b"y" * 600, b"z" * 10], 0)]
    assert [r.offset for r in page(batches, 0, max_bytes=1000).records] == [0]
    assert [r.offset for r in page(batches, 0, max_bytes=10).records] == [0]
    assert page(batches, 0, max_bytes=10).next_offset == 1
    assert len(page(batches, 0, max_bytes=1209).records) == 2
    assert len(page(batches, 0, max_bytes=1210).records) == 3
    too_big = [stored([b"x" * (READ_BYTES_MAX + 1)], 5)]
    with pytest.raises(BrookError) as error:
        page(too_big, 5)
    assert reason_of(error) == "BATCH_TOO_LARGE"
    assert error.value.metadata["required_bytes"] == str(READ_BYTES_MAX + 1)


@pytest.mark.parametrize("name", ["zstd", "lz4", "gzip"])
def test_page_decompresses(name: str) -> None:
    batch = stored([b"v%d" % i for i in range(5)], 0, codec=codec.codec_from_name(name))
    assert [r.value for r in page([batch], 2).records] == [b"v2", b"v3", b"v4"]


def test_as_text_uses_text_fields_for_utf8_only() -> None:
    record = ConsumerRecord("t", 0, 5, NOW_MS, "ключ".encode(), b"\xff\xfe", [("h", b"ok")], 1)
    text = consumed(record, as_text=True)
    assert (text.key_text, text.WhichOneof("value_kind"), text.value) == (
        "ключ",
        "value",
        b"\xff\xfe",
    )
    assert text.headers[0].value_text == "ok"
    raw = consumed(record, as_text=False)
    assert (raw.key, raw.headers[0].value) == ("ключ".encode(), b"ok")
    empty = consumed(ConsumerRecord("t", 0, 6, NOW_MS, None, b"", [], 1), as_text=True)
    assert empty.WhichOneof("key_kind") is None and empty.WhichOneof("value_kind") == "value_text"
    assert 'value_text: ""' in str(empty)  # set, so it is sent and shows in JSON
    assert record_bytes(record) == len("ключ".encode()) + 2 + 1 + 2 + 4


# -- the driver's pieces that need no network ----------------------------------------------
class FakeCache:
    """What RecordRouter reads of a MetadataCache."""

    def __init__(self) -> None:
        self.topics = {"t": TopicRecord("t", "id-1", 2, 2)}
        self.partitions = {
            ("t", 0): PartitionRecord("t", 0, "id-1", (1, 2), leader=1, leader_epoch=4),
            ("t", 1): PartitionRecord("t", 1, "id-1", (2, 1), leader=NO_LEADER),
        }
        self.nodes = {1: NodeInfo(1, "127.0.0.1:1")}


async def test_routes_come_from_the_cache_with_reasons_to_wait() -> None:
    cache = FakeCache()
    channels = PeerChannels(4, 1 << 20, 1 << 20, lambda: ["127.0.0.1:1"])
    router = RecordRouter(cache, NodeLimits(), ManualClock(), Closing(), channels, 1 << 20)  # type: ignore[arg-type]
    topic = cache.topics["t"]
    assert router.route(topic, 0) == Route(1, "127.0.0.1:1", 4)
    with pytest.raises(BrookError) as error:
        router.route(topic, 1)  # offline
    assert error.value.reason == "LEADER_NOT_AVAILABLE" and error.value.retriable
    cache.partitions[("t", 0)] = PartitionRecord("t", 0, "id-1", (1, 2), leader=2, leader_epoch=5)
    with pytest.raises(BrookError) as error:
        router.route(topic, 0)  # node 2 is not registered
    assert error.value.reason == "LEADER_NOT_AVAILABLE"
    assert error.value.metadata["leader_id"] == "2"
    cache.topics["t"] = TopicRecord("t", "id-2", 2, 2)  # deleted and created again
    with pytest.raises(BrookError) as error:
        router.route(topic, 0)
    assert error.value.reason == "TOPIC_NOT_FOUND" and not error.value.retriable
    await router.close()


async def test_peer_channels_are_bounded_and_closed() -> None:
    live = ["a:1", "b:1", "c:1"]
    channels = PeerChannels(2, 1 << 20, 1 << 20, lambda: live)
    first = channels.get("a:1")
    assert channels.get("a:1") is first
    channels.get("b:1")
    channels.get("a:1")  # a is the most recently used now
    channels.get("c:1")  # evicts b
    assert list(channels._peers) == ["a:1", "c:1"]
    assert channels.get("a:1") is first
    live.remove("a:1")  # a node moved away: its channel goes first
    channels.get("d:1")
    assert set(channels._peers) == {"c:1", "d:1"}
    await channels.close()
    with pytest.raises(BrookError):
        channels.get("a:1")


def test_read_answer_is_the_serialized_response() -> None:
    batch = stored([b"a", b"\xff"], 4, keys=[b"k", None], headers={1: [("h", b"v")]})
    got = page([batch], 4, as_text=True)
    expected = rs.ReadRecordsResponse(
        records=got.records, next_offset=got.next_offset, high_watermark=6, log_start_offset=0
    )
    assert read_answer(got, 6, 0) == expected.SerializeToString()
    assert rs.ReadRecordsResponse.FromString(read_answer(got, 6, 0)) == expected
    empty = rs.ReadRecordsResponse(next_offset=9, high_watermark=9, log_start_offset=0)
    assert read_answer(page([], 9), 9, 0) == empty.SerializeToString()
