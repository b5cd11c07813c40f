"""The internal *Wire twins must stay byte-compatible with the public messages.

Storage nodes serve stored batches through brook.internal.v1 twins whose batch fields are
`bytes`; clients decode the same bytes as brook.v1 messages. These tests prove that every
twin keeps its public message's field numbers and scalar types, and that bytes written
through a twin decode as the public message.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from brook.internal.v1 import wire_pb2
from brook.v1 import records_pb2, storage_pb2

TWINS: list[tuple[Descriptor, Descriptor]] = [
    (wire_pb2.FetchedPartitionWire.DESCRIPTOR, storage_pb2.FetchedPartition.DESCRIPTOR),
    (wire_pb2.FetchResponseWire.DESCRIPTOR, storage_pb2.FetchResponse.DESCRIPTOR),
    (wire_pb2.SubscribeResponseWire.DESCRIPTOR, storage_pb2.SubscribeResponse.DESCRIPTOR),
    (
        wire_pb2.ReplicaFetchedPartitionWire.DESCRIPTOR,
        storage_pb2.ReplicaFetchedPartition.DESCRIPTOR,
    ),
    (wire_pb2.ReplicaFetchResponseWire.DESCRIPTOR, storage_pb2.ReplicaFetchResponse.DESCRIPTOR),
    (wire_pb2.EpochEndOffsetWire.DESCRIPTOR, storage_pb2.EpochEndOffset.DESCRIPTOR),
    (wire_pb2.ProducePartitionWire.DESCRIPTOR, storage_pb2.ProducePartition.DESCRIPTOR),
    (wire_pb2.ProduceRequestWire.DESCRIPTOR, storage_pb2.ProduceRequest.DESCRIPTOR),
]

# Wire types that share an encoding: a twin may declare an enum as int32, a message as bytes.
_COMPATIBLE = {
    (FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE),
    (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_ENUM),
}


def test_twins_keep_field_numbers_and_types() -> None:
    """Each twin field has the public field's number, name, label, presence and a compatible
    wire type."""
    for twin, public in TWINS:
        assert len(twin.fields) == len(public.fields), twin.full_name
        for field in twin.fields:
            other = public.fields_by_number[field.number]
            assert field.name == other.name, (twin.full_name, field.name)
            assert field.is_repeated == other.is_repeated, (twin.full_name, field.name)
            # Same presence: a twin that dropped `optional` would omit a meaningful zero.
            assert field.has_presence == other.has_presence, (twin.full_name, field.name)
            same = field.type == other.type
            assert same or (field.type, other.type) in _COMPATIBLE, (twin.full_name, field.name)
            if same and field.type == FieldDescriptor.TYPE_MESSAGE:
                assert field.message_type.fields_by_number.keys() == (
                    other.message_type.fields_by_number.keys()
                ), (twin.full_name, field.name)


def test_stored_batch_bytes_decode_as_public_fetch_response() -> None:
    """A FetchResponseWire with serialized batches parses as FetchResponse, batches equal."""
    batch = records_pb2.RecordBatch(
        base_offset=42, partition_leader_epoch=3, record_count=2, crc32c=7, records=b"\x01" * 64
    )
    wire = wire_pb2.FetchResponseWire(
        partitions=[
            wire_pb2.FetchedPartitionWire(
                topic="orders", partition=1, high_watermark=44, batches=[batch.SerializeToString()]
            )
        ]
    )
    decoded = storage_pb2.FetchResponse.FromString(wire.SerializeToString())
    assert decoded.partitions[0].topic == "orders"
    assert decoded.partitions[0].high_watermark == 44
    assert list(decoded.partitions[0].batches) == [batch]
