"""The `brook` console script: the server processes, and the client commands.

    brook node|coordinator|groups|dev ...      the server processes (their own --help)
    brook topic|produce|consume|cluster|group|partitions|leaders|perf ...  the client
    brook node list|decommission|recommission ...          the client too (brook.client.cli)

Server commands run the service's `main(argv) -> int`; every other command line goes to
the client CLI, which lists the server commands in `brook --help` too. A server's module
is imported only when it is asked for, so the client commands do not load the servers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from brook.client.cli import main as client_main


def _node(argv: list[str]) -> int:
    from brook.services.node.main import main

    return main(argv)


def _coordinator(argv: list[str]) -> int:
    from brook.services.coordinator.main import main

    return main(argv)


def _groups(argv: list[str]) -> int:
    from brook.services.groups.main import main

    return main(argv)


def _dev(argv: list[str]) -> int:
    from brook.services.dev import main

    return main(argv)


# name: (help line, runner)
SERVER_COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "node": ("run a storage node", _node),
    "coordinator": ("run a coordinator (Admin and Metadata services)", _coordinator),
    "groups": ("run a group manager (consumer groups, offsets)", _groups),
    "dev": ("run a local cluster: etcd, coordinator, group manager, nodes", _dev),
}


def _client_node_action(arguments: Sequence[str]) -> bool:
    """`brook node list|decommission|recommission` is the client's; other `brook node` runs
    a storage node."""
    from brook.client.cli.partitions import NODE_ACTIONS

    return arguments[0] == "node" and len(arguments) > 1 and arguments[1] in NODE_ACTIONS


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one `brook` command line; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in SERVER_COMMANDS and not _client_node_action(arguments):
        _, run = SERVER_COMMANDS[arguments[0]]
        return int(run(arguments[1:]) or 0)
    server_help = {name: help_text for name, (help_text, _) in SERVER_COMMANDS.items()}
    return client_main(arguments, server_commands=server_help)


if __name__ == "__main__":
    sys.exit(main())
