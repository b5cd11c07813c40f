"""`brook config describe|alter`: topic configs, in Kafka's kafka-configs habits.

    brook config describe --topic T [--output json]
    brook config alter --topic T [--add-config k=v[,k=v]] [--delete-config k[,k]]
                       [--validate-only]

Configs are per topic (services/metadata/configs.py): nodes have no live configs, their
settings are command-line flags. Dotted Kafka names (`retention.ms`) are accepted.
`describe` shows every key with its effective value, where it comes from (default or set
on the topic) and the default; `alter` prints the configs after the change.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from brook.client.admin import Admin
from brook.client.cli.groups import table
from brook.client.cli.options import add_output, message_json, parse_config, print_json
from brook.v1 import admin_pb2


def register(commands: Any) -> None:
    """Adds `config` to the CLI's subcommands."""
    config = commands.add_parser("config", help="describe and alter topic configs")
    config.set_defaults(handler=lambda args: cmd_config(args, sys.stdout))
    actions = config.add_subparsers(dest="config_command", metavar="ACTION")
    actions.required = True
    describe = actions.add_parser("describe", help="every config of a topic")
    describe.add_argument("--topic", required=True)
    add_output(describe)
    alter = actions.add_parser("alter", help="set or revert a topic's configs")
    alter.add_argument("--topic", required=True)
    alter.add_argument(
        "--add-config", action="append", default=[], metavar="K=V[,K=V]",
        help="keys to set (repeatable, or comma-separated)",
    )  # fmt: skip
    alter.add_argument(
        "--delete-config", action="append", default=[], metavar="K[,K]",
        help="keys to revert to their defaults (repeatable, or comma-separated)",
    )  # fmt: skip
    alter.add_argument(
        "--validate-only", action="store_true", help="check the change, store nothing"
    )
    add_output(alter)


def _split(values: Sequence[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _source(entry: admin_pb2.ConfigEntry) -> str:
    return {admin_pb2.CONFIG_SOURCE_TOPIC: "topic", admin_pb2.CONFIG_SOURCE_DEFAULT: "default"}.get(
        entry.source, "-"
    )


def print_configs(
    topic: str, entries: Sequence[admin_pb2.ConfigEntry], args: argparse.Namespace, out: TextIO
) -> None:
    if getattr(args, "output", "text") == "json":
        print_json({"topic": topic, "configs": [message_json(e) for e in entries]}, out)
        return
    table(
        ["NAME", "VALUE", "SOURCE", "DEFAULT"],
        [[e.name, e.value, _source(e), e.default_value] for e in entries],
        out,
    )


async def cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    async with Admin(args.bootstrap) as admin:
        if args.config_command == "describe":
            entries = await admin.describe_configs(args.topic)
        else:
            setting = parse_config(_split(args.add_config))
            deleting = _split(args.delete_config)
            if not setting and not deleting:
                raise ValueError("config alter needs --add-config or --delete-config")
            entries = await admin.alter_configs(
                args.topic, setting, deleting, validate_only=args.validate_only
            )
            if getattr(args, "output", "text") != "json":
                verb = "would alter" if args.validate_only else "altered"
                print(f"{verb} configs of topic {args.topic}", file=out)
    print_configs(args.topic, sorted(entries, key=lambda e: e.name), args, out)
    return 0
