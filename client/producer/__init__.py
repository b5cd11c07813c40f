"""The producer: `Producer` (producer.py) batches records per partition in the
`RecordAccumulator` (accumulator.py), choosing partitions with the kernel's
partitioner (brook.partitioner), and sends one Produce per leader node carrying many batches.

    from brook.client.producer import Producer
"""

from brook.client.producer.producer import ACKS, BatchListener, Producer, ProducerStats, WouldBlock

__all__ = ["ACKS", "BatchListener", "Producer", "ProducerStats", "WouldBlock"]
