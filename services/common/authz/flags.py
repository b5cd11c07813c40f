"""The authorization flags every server process takes (`process.add_common_arguments`).

    --authorizer none|acl      none (default): everything is allowed, for local
                               development; acl: ACLs in etcd decide, default deny
    --super-users P[,P...]     principals allowed everything (user:admin,user:ops)
    --audit-log FILE           audit lines (JSON, one per line) go to FILE instead of the
                               process log
"""

from __future__ import annotations

import argparse

from brook.services.common.authz.core import parse_super_users
from brook.services.common.authz.enforce import AUTHORIZERS


def _super_users(text: str) -> frozenset[str]:
    try:
        return parse_super_users(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_authorization_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("authorization (README: Access control)")
    group.add_argument(
        "--authorizer", choices=AUTHORIZERS, default="none",
        help="acl: ACLs stored in etcd decide every call (default deny); none: allow all",
    )  # fmt: skip
    group.add_argument(
        "--super-users", type=_super_users, default=frozenset(), metavar="PRINCIPALS",
        help="comma-separated principals allowed everything, e.g. user:admin,user:ops",
    )  # fmt: skip
    group.add_argument(
        "--audit-log", default="", metavar="FILE",
        help="write audit lines (JSON) to FILE instead of the process log",
    )  # fmt: skip
