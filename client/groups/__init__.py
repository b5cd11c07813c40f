"""Consumer groups, the member's side: `GroupConsumer` (group_consumer.py) is a `Consumer`
whose partitions come from the group; `GroupMembership` (membership.py) heartbeats to the
group manager and reconciles the assignment. Group administration is
`brook.client.admin.GroupAdmin`.

    from brook.client.groups import GroupConsumer, RebalanceListener
"""

from brook.client.groups.group_consumer import GroupConsumer
from brook.client.groups.membership import CommittedOffset, GroupMembership, RebalanceListener

__all__ = ["CommittedOffset", "GroupConsumer", "GroupMembership", "RebalanceListener"]
