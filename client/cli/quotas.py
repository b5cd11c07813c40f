"""`brook quota set|list|remove`: client quotas per principal, in Kafka's kafka-configs
habits (`--entity-type users`), as rates a principal is slowed to, not refused at.

    brook quota set --principal user:alice --produce-bytes-per-s 1048576 \\
                    --fetch-bytes-per-s 4194304 --requests-per-s 200 --streams-max 10 \\
                    --connections-per-s 20
    brook quota set --default --produce-bytes-per-s 10485760
    brook quota list [--principal user:alice | --default]
    brook quota remove --principal user:alice

`set` replaces the principal's quotas whole (a rate not given is unlimited). Changing
quotas needs alter_configs on the cluster, listing describe_configs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from brook.client.admin import Admin
from brook.client.cli.options import add_output, message_json, print_json
from brook.v1 import admin_pb2

DEFAULT = "<default>"
RATES = ("produce_bytes_per_s", "fetch_bytes_per_s", "requests_per_s", "connections_per_s")


def _who(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--principal", default="", help="user:NAME, node:ID or anonymous")
    group.add_argument("--default", action="store_true",
                       help="the quota of every principal without its own")  # fmt: skip


def register(commands: Any) -> None:
    quota = commands.add_parser("quota", help="set, list, remove client quotas")
    quota.set_defaults(handler=lambda args: cmd_quota(args, sys.stdout))
    quota_commands = quota.add_subparsers(dest="quota_command", required=True)
    setting = quota_commands.add_parser("set", help="replace a principal's quotas")
    _who(setting, required=True)
    for rate in RATES:
        setting.add_argument(f"--{rate.replace('_', '-')}", type=float, default=None)
    setting.add_argument("--streams-max", type=int, default=None)
    listing = quota_commands.add_parser("list", help="list quotas")
    _who(listing, required=False)
    add_output(listing)
    removing = quota_commands.add_parser("remove", help="remove a principal's quotas")
    _who(removing, required=True)


def format_quota(entry: admin_pb2.ClientQuota) -> str:
    fields = [f"{name}={getattr(entry, name):g}" for name in (*RATES, "streams_max")
              if entry.HasField(name)]  # type: ignore[arg-type]  # fmt: skip
    return f"{entry.principal}\t{' '.join(fields) or 'unlimited'}"


async def cmd_quota(args: argparse.Namespace, out: TextIO) -> int:
    principal = DEFAULT if args.default else args.principal
    async with Admin(args.bootstrap) as admin:
        if args.quota_command == "list":
            entries = await admin.describe_client_quotas(principal)
            if getattr(args, "output", "text") == "json":
                print_json({"quotas": [message_json(entry) for entry in entries]}, out)
                return 0
            for entry in entries:
                print(format_quota(entry), file=out)
            return 0
        entry = admin_pb2.ClientQuota(principal=principal)
        if args.quota_command == "set":
            for name in (*RATES, "streams_max"):
                value = getattr(args, name)
                if value is not None:
                    setattr(entry, name, value)
        for stored in await admin.alter_client_quotas([entry]):
            print(format_quota(stored), file=out)
    return 0
