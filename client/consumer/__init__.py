"""The plain consumer: `Consumer` reads partitions it is assigned (no group), with a
background fetcher per leader node and a bounded prefetch buffer.

    from brook.client.consumer import Consumer
"""

from brook.client.consumer.consumer import RESET_POLICIES, Consumer, TopicPartitionLike

__all__ = ["RESET_POLICIES", "Consumer", "TopicPartitionLike"]
