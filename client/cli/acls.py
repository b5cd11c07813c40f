"""`brook acl add|list|remove`: access control lists, in Kafka's kafka-acls habits.

    brook acl add --allow-principal user:alice --operation read --topic orders
    brook acl add --allow-principal user:etl --operation write --topic etl- \\
                  --resource-pattern-type prefixed
    brook acl add --deny-principal user:bob --operation all --group payments
    brook acl add --allow-principal user:ops --operation alter --cluster
    brook acl list [--principal user:alice] [--topic orders | --group G | --cluster]
                   [--resource-pattern-type any|literal|prefixed|match]
    brook acl remove --allow-principal user:alice --operation read --topic orders

`add` stores every combination of the principals, operations and resources given;
`remove` deletes the ACLs those combinations select (no --operation: every operation; no
principal: every principal) and prints what it deleted. ACLs act only where processes run
`--authorizer acl`; changing them needs alter on the cluster, listing describe.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any, TextIO

from brook.client.admin import Admin
from brook.client.admin.acls import (
    OPERATIONS,
    acl_binding,
    acl_filter,
    format_acl,
)
from brook.client.cli.options import add_output, message_json, print_json
from brook.v1 import admin_pb2


def _resource_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", action="append", default=[], metavar="NAME",
                        help="a topic (repeat for more; * for every topic)")
    parser.add_argument("--group", action="append", default=[], metavar="ID",
                        help="a consumer group (repeat for more; * for every group)")
    parser.add_argument("--cluster", action="store_true", help="the cluster itself")


def _change_flags(parser: argparse.ArgumentParser, *, operation_required: bool) -> None:
    parser.add_argument("--allow-principal", action="append", default=[], metavar="PRINCIPAL",
                        help="user:NAME, node:ID, user:*, node:* or * (repeatable)")
    parser.add_argument("--deny-principal", action="append", default=[], metavar="PRINCIPAL",
                        help="a principal to deny (repeatable; deny wins over allow)")
    parser.add_argument("--operation", action="append", default=[], choices=OPERATIONS,
                        required=operation_required, help="what to allow or deny (repeatable)")
    _resource_flags(parser)
    parser.add_argument("--resource-pattern-type", choices=("literal", "prefixed"),
                        default="literal",
                        help="literal: the names given; prefixed: every name starting so")


def register(commands: Any) -> None:
    """Adds `acl` to the CLI's subcommands."""
    acl = commands.add_parser("acl", help="add, list, remove access control lists")
    acl.set_defaults(handler=lambda args: cmd_acl(args, sys.stdout))
    acl_commands = acl.add_subparsers(dest="acl_command", metavar="ACTION")
    acl_commands.required = True
    add = acl_commands.add_parser("add", help="allow or deny operations on resources")
    _change_flags(add, operation_required=True)
    listing = acl_commands.add_parser("list", help="list ACLs")
    add_output(listing)
    listing.add_argument("--principal", default="", help="only ACLs naming this principal")
    _resource_flags(listing)
    listing.add_argument(
        "--resource-pattern-type", choices=("any", "literal", "prefixed", "match"),
        default="any",
        help="any: ACLs naming the resource exactly; match: every ACL that applies to it",
    )  # fmt: skip
    remove = acl_commands.add_parser("remove", help="delete ACLs (prints what was deleted)")
    _change_flags(remove, operation_required=False)


def _resources(args: argparse.Namespace) -> list[tuple[str, str]]:
    found = [("topic", t) for t in args.topic] + [("group", g) for g in args.group]
    if args.cluster:
        found.append(("cluster", ""))
    return found


def _principals(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [(p, "allow") for p in args.allow_principal] + [
        (p, "deny") for p in args.deny_principal
    ]


async def cmd_acl(args: argparse.Namespace, out: TextIO) -> int:
    resources = _resources(args)
    if args.acl_command in ("add", "remove") and not resources:
        raise ValueError("name a resource: --topic, --group or --cluster")
    async with Admin(args.bootstrap) as admin:
        if args.acl_command == "add":
            principals = _principals(args)
            if not principals:
                raise ValueError("name a principal: --allow-principal or --deny-principal")
            bindings = [
                acl_binding(principal, operation, kind, name,
                            pattern_type=args.resource_pattern_type, permission=permission)
                for (principal, permission), operation, (kind, name)
                in itertools.product(principals, args.operation, resources)
            ]  # fmt: skip
            for binding in await admin.create_acls(bindings):
                print(f"added {format_acl(binding)}", file=out)
        elif args.acl_command == "list":
            pattern = "" if args.resource_pattern_type == "any" else args.resource_pattern_type
            filters = [
                acl_filter(principal=args.principal, resource_type=kind, resource_name=name,
                           pattern_type=pattern)
                for kind, name in resources
            ] or [acl_filter(principal=args.principal, pattern_type=pattern)]  # fmt: skip
            seen: set[bytes] = set()
            found = []
            for selected in filters:
                for binding in await admin.describe_acls(selected):
                    key = binding.SerializeToString(deterministic=True)
                    if key not in seen:
                        seen.add(key)
                        found.append(binding)
            if getattr(args, "output", "text") == "json":
                print_json({"acls": [message_json(binding) for binding in found]}, out)
            else:
                for binding in found:
                    print(format_acl(binding), file=out)
        else:
            who: list[tuple[str, str]] = _principals(args) or [("", "")]
            operations = args.operation or [""]
            removal: list[admin_pb2.AclFilter] = [
                acl_filter(principal=principal, permission=permission, operation=operation,
                           resource_type=kind, resource_name=name,
                           pattern_type=args.resource_pattern_type)
                for (principal, permission), operation, (kind, name)
                in itertools.product(who, operations, resources)
            ]  # fmt: skip
            deleted = await admin.delete_acls(removal)
            for binding in deleted:
                print(f"removed {format_acl(binding)}", file=out)
            print(f"{len(deleted)} ACLs removed", file=out)
    return 0
