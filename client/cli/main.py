"""The `brook` client command line: the parser, the dispatch, and how failures print.

    brook [--bootstrap HOST:PORT] topic create NAME --partitions N --replication-factor R
    brook topic list | describe NAME | delete NAME
    brook produce TOPIC [--acks 0|1|all] [--key-separator SEP] [--partition P]
    brook consume TOPIC [--from-beginning | --offset N --partition P | --from-time T]
                        [--group G] [--max-records N] [--timeout-ms T] [--format F]
    brook cluster describe | health (exit 0 only when healthy)
    brook topic describe [NAME] [--under-replicated | --offline]
    brook group list | describe G | lag G [--watch] | reset-offsets G ... | delete G
    brook config describe|alter --topic T ... (configs.py)
    brook logs dirs [--node ID] [--topic T] (logs.py)
    (read commands take --output json)
    brook acl add|list|remove --allow-principal P --operation OP --topic T ... (acls.py)
    brook quota set|list|remove --principal P|--default --produce-bytes-per-s N ... (quotas.py)
    brook partitions reassign|rebalance ..., brook node list|decommission|recommission N,
    brook leaders elect --preferred|--unclean (partitions.py)
    brook perf produce|consume ...

Each command module registers its subcommand with a `handler(args) -> Awaitable[int]`.
The server processes (`brook node|coordinator|groups|dev`) are not the client's: the
`brook` console script is `brook.services.cli`, which runs those itself and hands every
other command here, naming the server commands so that `brook --help` lists them too.

The bootstrap address comes from --bootstrap, else $BROOK_BOOTSTRAP, else the
"bootstrap" of ./data/cluster.json (written by `brook dev`), else 127.0.0.1:7070. TLS
and token settings come from --tls-ca/--tls-cert/--tls-key/--token, else
$BROOK_TLS_CA/$BROOK_TLS_CERT/$BROOK_TLS_KEY/$BROOK_TOKEN, else the "tls" of that
cluster.json (`brook dev --secure`); none of them: plaintext.
Expected failures print one line, `error: REASON: message`, and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version

from brook.client import defaults
from brook.client.cli import (
    acls,
    configs,
    consume,
    groups,
    logs,
    partitions,
    perf,
    produce,
    quotas,
    topics,
)
from brook.client.cli.options import default_bootstrap, default_security
from brook.errors import BrookError
from brook.transport import ChannelSecurity, set_default_security

Handler = Callable[[argparse.Namespace], Awaitable[int]]

# The command modules, in the order `brook --help` lists them.
COMMAND_MODULES = (topics, produce, consume, groups, configs, logs, acls, quotas, partitions, perf)


def _version() -> str:
    try:
        return version("brook")
    except PackageNotFoundError:  # not installed as a distribution (running from a checkout)
        return "0+unknown"


def build_parser(server_commands: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The parser of every client command; `server_commands` (name: help) are listed in
    the help only, since whoever passes them runs those commands before parsing."""
    parser = argparse.ArgumentParser(
        prog="brook", description="Brook: a distributed commit log. Client and server commands."
    )
    parser.add_argument("--version", action="version", version=f"brook {_version()}")
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT[,HOST:PORT]",
        help="coordinator address(es); default $BROOK_BOOTSTRAP, ./data/cluster.json, "
        f"or {defaults.BOOTSTRAP}",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="CA bundle that verifies the servers (turns on TLS); default "
        "$BROOK_TLS_CA or the cluster.json of `brook dev --secure`",
    )
    parser.add_argument(
        "--tls-cert", metavar="PEM", help="client certificate (mTLS); default $BROOK_TLS_CERT"
    )
    parser.add_argument("--tls-key", metavar="PEM", help="its key; default $BROOK_TLS_KEY")
    parser.add_argument("--token", help="bearer token (TLS only); default $BROOK_TOKEN")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for module in COMMAND_MODULES:
        module.register(commands)
    for name, help_text in (server_commands or {}).items():
        if name in commands.choices:  # `brook node list` is the client's, `brook node -..` not
            continue
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


async def _run(args: argparse.Namespace) -> int:
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:  # a server command listed for --help reached the client
        raise ValueError(f"`brook {args.command}` is not a client command")
    return int(await handler(args) or 0)


def main(
    argv: Sequence[str] | None = None, *, server_commands: Mapping[str, str] | None = None
) -> int:
    """Runs one client command; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(server_commands).parse_args(arguments)
    if not args.bootstrap:
        args.bootstrap = default_bootstrap()
    try:
        fallback = default_security(bootstrap=args.bootstrap)
        args.security = ChannelSecurity(
            ca_file=args.tls_ca or fallback["tls_ca"] or None,
            cert_file=args.tls_cert or fallback["tls_cert"] or None,
            key_file=args.tls_key or fallback["tls_key"] or None,
            token=args.token or fallback["token"] or None,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Every client a command builds uses it (commands may also pass args.security).
    set_default_security(args.security)
    try:
        return asyncio.run(_run(args))
    except BrookError as error:
        print(f"error: {error.reason}: {error.message}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`brook consume ... | head`): not an error of ours.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
