"""Adversarial clients: requests a well-behaved client never sends, straight over gRPC.

Each function sends one kind of hostile request and returns an `Outcome`: what it did
(`note`) and what the cluster got wrong while answering (`anomalies`: a poison batch
accepted, a follower position past the log end taken, an oversized string served or
echoed back, an answer that took far too long). Whether the cluster stays healthy
afterwards is the campaign's check (heal); whether acknowledged data survived is the
history checker's.

- `forged_replica_fetch`: ReplicaFetch to a partition's leader with the replica_id of one
  of its real followers, claiming a fetch position at (or far past) the leader's log end,
  in a tight loop: a leader that believes it advances its high watermark, and acks=all
  answers, for data no follower has.
- `fetch_nonexistent`: Fetch requests naming thousands of partitions that do not exist,
  several at once.
- `poison_produce`: Produce of batches with a valid crc32c that lie about themselves:
  record_count not matching the records, compression codec 9 (unknown), records bytes
  that are not a `brook.v1.Records` message.
- `huge_strings`: Admin, Metadata and Group calls whose strings are about a megabyte.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from brook import codec
from brook.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    errors_pb2,
    groups_pb2,
    groups_pb2_grpc,
    metadata_pb2,
    metadata_pb2_grpc,
    records_pb2,
    storage_pb2,
    storage_pb2_grpc,
)

# Bounds (why): every hostile call must be answered quickly by a server that checks its
# bounds before working; a call slower than this is reported (the server did the work).
SLOW_ANSWER_S = 5.0
CALL_TIMEOUT_S = 20.0
# An error trailer bigger than this echoed the oversized input back.
MAX_TRAILER_BYTES = 16 * 1024
# A string "huge" enough to be refused by any sane bound, and below gRPC's 4 MiB message
# limit so it reaches the handler.
HUGE = 1_000_000
# How far past the log end a forged follower claims to be.
FORGED_AHEAD = 1_000_000
NONEXISTENT_PARTITIONS = 5_000
CONCURRENT_FETCHES = 4
# Not a Records message: field 1 with wire type 7, which no protobuf parser accepts.
NOT_RECORDS = b"\x0f\xff\xff\xff\x07garbage-that-is-not-a-records-message"
UNKNOWN_CODEC = 9


@dataclass
class Outcome:
    """What an adversarial action did and what the cluster got wrong."""

    note: str = ""
    anomalies: list[str] = field(default_factory=list)


def _reason(error: errors_pb2.PartitionError) -> str:
    if error.reason == 0 and error.code == 0:
        return "OK"
    return errors_pb2.ErrorReason.Name(error.reason)


def _channel(address: str) -> grpc.aio.Channel:
    # Large enough to send the huge-string requests (the client default is unlimited to
    # send, 4 MiB to receive; the server's bound is the one under test).
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", 8 << 20),
            ("grpc.max_receive_message_length", 8 << 20),
        ],
    )


async def forged_replica_fetch(
    leader_address: str,
    topic: str,
    partition: int,
    follower_id: int,
    leader_epoch: int,
    duration_s: float,
    *,
    ahead: bool,
) -> Outcome:
    """Claims to be follower `follower_id` of (topic, partition) for `duration_s`, at the
    leader's log end (or FORGED_AHEAD past it when `ahead`), as fast as answers come."""
    answers: Counter[str] = Counter()
    outcome = Outcome()
    log_end = 0
    deadline = time.monotonic() + duration_s
    async with _channel(leader_address) as channel:
        stub = storage_pb2_grpc.ReplicaServiceStub(channel)
        while time.monotonic() < deadline:
            claimed = log_end + (FORGED_AHEAD if ahead else 0)
            request = storage_pb2.ReplicaFetchRequest(
                replica_id=follower_id,
                max_wait_ms=0,
                min_bytes=1,
                max_bytes=1,
                partitions=[
                    storage_pb2.ReplicaFetchPartition(
                        topic=topic,
                        partition=partition,
                        fetch_offset=claimed,
                        current_leader_epoch=leader_epoch,
                        last_fetched_epoch=leader_epoch,
                        partition_max_bytes=1,
                    )
                ],
            )
            try:
                response = await stub.ReplicaFetch(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                answers[error.code().name] += 1
                if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    break  # the leader went away (the campaign may have killed it)
                continue
            for fetched in response.partitions:
                reason = _reason(fetched.error)
                if reason == "OK" and fetched.HasField("diverging_epoch"):
                    # Told to truncate (KIP-320): the leader took no position from it.
                    reason = "DIVERGING"
                answers[reason] += 1
                if reason != "OK":
                    continue
                if fetched.log_end_offset > log_end:
                    log_end = fetched.log_end_offset
                if ahead and claimed > fetched.log_end_offset:
                    message = (
                        f"leader took a fetch position {claimed} past its log end"
                        f" {fetched.log_end_offset}"
                    )
                    if message not in outcome.anomalies[:1]:
                        outcome.anomalies[:1] = [message]
                if fetched.high_watermark > fetched.log_end_offset >= 0:
                    outcome.anomalies.append(
                        f"high watermark {fetched.high_watermark} past log end"
                        f" {fetched.log_end_offset}"
                    )
            if answers.get("INVALID_REQUEST", 0) + answers.get("PERMISSION_DENIED", 0) > 20:
                break  # refused for what it is: no point hammering on
    outcome.note = (
        f"forged ReplicaFetch as node {follower_id} to {topic}-{partition}"
        f"{' (ahead of the log end)' if ahead else ''}: "
        + ", ".join(f"{k}={v}" for k, v in sorted(answers.items()))
    )
    outcome.anomalies = outcome.anomalies[:5]
    return outcome


async def fetch_nonexistent(address: str, topic: str) -> Outcome:
    """CONCURRENT_FETCHES Fetch calls at once, each naming NONEXISTENT_PARTITIONS
    partitions that do not exist (unknown topics, and partitions of `topic` past its
    count)."""
    wanted = [
        storage_pb2.FetchPartition(
            topic=f"ghost-{index}", partition=index, fetch_offset=0, partition_max_bytes=1024
        )
        for index in range(NONEXISTENT_PARTITIONS // 2)
    ]
    wanted += [
        storage_pb2.FetchPartition(
            topic=topic, partition=10_000 + index, fetch_offset=0, partition_max_bytes=1024
        )
        for index in range(NONEXISTENT_PARTITIONS - len(wanted))
    ]
    request = storage_pb2.FetchRequest(
        max_wait_ms=500, min_bytes=1, max_bytes=1 << 20, partitions=wanted
    )
    outcome = Outcome()
    async with _channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)

        async def one() -> str:
            started = time.monotonic()
            try:
                response = await stub.Fetch(request, timeout=CALL_TIMEOUT_S)
                answered = Counter(_reason(p.error) for p in response.partitions)
                what = "answered " + ", ".join(f"{k}={v}" for k, v in answered.items())
                if answered.get("OK"):
                    outcome.anomalies.append(f"{answered['OK']} nonexistent partitions OK")
            except grpc.aio.AioRpcError as error:
                what = error.code().name
            elapsed = time.monotonic() - started
            if elapsed > SLOW_ANSWER_S:
                outcome.anomalies.append(f"Fetch of nonexistent partitions took {elapsed:.1f}s")
            return f"{what} in {elapsed:.2f}s"

        results = await asyncio.gather(*(one() for _ in range(CONCURRENT_FETCHES)))
    outcome.note = (
        f"{CONCURRENT_FETCHES}x Fetch of {NONEXISTENT_PARTITIONS} nonexistent"
        f" partitions: {results[0]}"
    )
    return outcome


def _poison_batches() -> dict[str, records_pb2.RecordBatch]:
    now_ms = time.time_ns() // 1_000_000
    miscounted = codec.encode_batch([b"poison-1", b"poison-2"], [now_ms, now_ms])
    miscounted.record_count = 7
    unknown_codec = codec.encode_batch([b"poison-codec"], [now_ms])
    unknown_codec.compression = UNKNOWN_CODEC  # type: ignore[assignment]
    not_records = codec.encode_batch([b"poison-bytes"], [now_ms])
    not_records.records = NOT_RECORDS
    not_records.crc32c = codec.crc32c(NOT_RECORDS)
    not_records.uncompressed_bytes = len(NOT_RECORDS)
    return {
        "record_count 7 for 2 records": miscounted,
        f"compression {UNKNOWN_CODEC}": unknown_codec,
        "records not a Records message": not_records,
    }


async def poison_produce(address: str, topic: str, partition: int, epoch: int) -> Outcome:
    """One acks=all Produce per poison batch to the leader of (topic, partition)."""
    outcome = Outcome()
    answers: list[str] = []
    async with _channel(address) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        for what, batch in _poison_batches().items():
            request = storage_pb2.ProduceRequest(
                acks=storage_pb2.ACKS_ALL,
                timeout_ms=3_000,
                client_id="chaos-poison",
                partitions=[
                    storage_pb2.ProducePartition(
                        topic=topic,
                        partition=partition,
                        current_leader_epoch=epoch,
                        batches=[batch],
                    )
                ],
            )
            try:
                response = await stub.Produce(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                answers.append(f"{what}: {error.code().name}")
                continue
            answer = response.partitions[0]
            reason = _reason(answer.error)
            answers.append(f"{what}: {reason}")
            if reason == "OK":
                outcome.anomalies.append(
                    f"poison batch ({what}) accepted at {topic}-{partition} offset"
                    f" {answer.base_offset}"
                )
    outcome.note = f"poison Produce to {topic}-{partition}: " + "; ".join(answers)
    return outcome


async def _expect_refusal(what: str, call: Awaitable[Any], outcome: Outcome) -> str:
    """Awaits a call that must be refused quickly and without echoing its input (an
    answer that is not an error counts only if it is small: per-item errors are a
    refusal too, an echo of a megabyte is not)."""
    started = time.monotonic()
    try:
        answer = await call
    except grpc.aio.AioRpcError as error:
        elapsed = time.monotonic() - started
        trailer = sum(len(k) + len(v) for k, v in (error.trailing_metadata() or ()))
        trailer += len(error.details() or "")
        if trailer > MAX_TRAILER_BYTES:
            outcome.anomalies.append(f"{what}: {trailer}-byte error echoed the input")
        if error.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
            outcome.anomalies.append(f"{what}: unhandled ({error.code().name})")
        if elapsed > SLOW_ANSWER_S:
            outcome.anomalies.append(f"{what}: refused only after {elapsed:.1f}s")
        return f"{what}: {error.code().name}"
    size = answer.ByteSize() if hasattr(answer, "ByteSize") else 0
    if size <= MAX_TRAILER_BYTES and not what.startswith("CreateTopic"):
        return f"{what}: answered in {size} bytes"
    outcome.anomalies.append(f"{what}: accepted ({size}-byte answer)")
    return f"{what}: accepted"


async def huge_strings(
    coordinator: str, group_manager: str | None, cleanup: Callable[[str], Awaitable[None]]
) -> Outcome:
    """Admin, Metadata and Group calls with megabyte strings; each must be refused.
    `cleanup(topic)` deletes a topic one of them created if it was (wrongly) accepted."""
    outcome = Outcome()
    results: list[str] = []
    configured = f"chaos-huge-config-{time.monotonic_ns() % 10**9}"
    async with _channel(coordinator) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        metadata = metadata_pb2_grpc.MetadataServiceStub(channel)
        calls: list[tuple[str, Awaitable[Any]]] = [
            (
                "CreateTopic name",
                admin.CreateTopic(
                    admin_pb2.CreateTopicRequest(
                        name="t" * HUGE, partition_count=1, replication_factor=1
                    ),
                    timeout=CALL_TIMEOUT_S,
                ),
            ),
            (
                "DescribeTopic name",
                admin.DescribeTopic(
                    admin_pb2.DescribeTopicRequest(name="d" * HUGE), timeout=CALL_TIMEOUT_S
                ),
            ),
            (
                "CreateTopic config",
                admin.CreateTopic(
                    admin_pb2.CreateTopicRequest(
                        name=configured,
                        partition_count=1,
                        replication_factor=1,
                        configs={"k" * (HUGE // 2): "v" * (HUGE // 2)},
                    ),
                    timeout=CALL_TIMEOUT_S,
                ),
            ),
            (
                "GetMetadata topics",
                metadata.GetMetadata(
                    metadata_pb2.GetMetadataRequest(topics=["m" * (HUGE // 10)] * 30),
                    timeout=CALL_TIMEOUT_S,
                ),
            ),
        ]
        for what, call in calls:
            results.append(await _expect_refusal(what, call, outcome))
    if any(a.startswith("CreateTopic config") for a in outcome.anomalies):
        await cleanup(configured)
    if group_manager:
        async with _channel(group_manager) as channel:
            groups = groups_pb2_grpc.GroupServiceStub(channel)
            results.append(
                await _expect_refusal(
                    "DescribeGroup id",
                    groups.DescribeGroup(
                        groups_pb2.DescribeGroupRequest(group_id="g" * HUGE), timeout=CALL_TIMEOUT_S
                    ),
                    outcome,
                )
            )
    outcome.note = "huge strings: " + "; ".join(results)
    return outcome
