"""Administration clients: `Admin` (topics and the cluster, on the active coordinator) and
`GroupAdmin` (consumer groups, on the active group manager).

    from brook.client.admin import Admin, GroupAdmin
"""

from brook.client.admin.acls import acl_binding, acl_filter, format_acl
from brook.client.admin.admin import ELECTION_TYPES, Admin
from brook.client.admin.group_admin import GROUP_STATES, GroupAdmin, group_state_name

__all__ = [
    "ELECTION_TYPES",
    "GROUP_STATES",
    "Admin",
    "GroupAdmin",
    "acl_binding",
    "acl_filter",
    "format_acl",
    "group_state_name",
]
