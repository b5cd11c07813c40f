"""What the three server processes (node, coordinator, groups) share around their core.

- `add_common_arguments`: the flags every process takes (design.md, "Processes and their
  command lines"), so their names and defaults cannot drift apart;
- `write_ready_file`: the `{"address", "pid"}` file tests and `brook dev` wait on (with
  `metrics_address` when the process serves /metrics);
- `advertised_address`: what peers and clients should dial;
- `cancel_and_wait`: stop a background task during shutdown;
- `run_main`: parse, configure logging, run until SIGTERM/SIGINT, map BrookError to exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from brook.errors import BrookError
from brook.services.common.authz.flags import add_authorization_arguments
from brook.services.common.logs import FORMATS as LOG_FORMATS
from brook.services.common.metrics import add_metrics_arguments
from brook.services.common.server import configure_logging, run_until_signal
from brook.services.common.tls import add_security_arguments

# Hosts that mean "every interface": not something a peer can dial.
WILDCARD_HOSTS = ("", "0.0.0.0", "[::]", "::")


class Process(Protocol):
    """A server process as `run_main` drives it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def add_common_arguments(parser: argparse.ArgumentParser, *, listen_default: str) -> None:
    """Adds --listen, --etcd, --cluster-name, --advertise, --ready-file, --log-level and the
    security flags (--tls-*, --client-*, --principal-mapping, tokens, --etcd-*: tls.py)."""
    parser.add_argument("--listen", default=listen_default,
                        help="HOST:PORT to serve on; port 0 picks a free port")
    parser.add_argument("--etcd", default="127.0.0.1:2379", help="etcd HOST:PORT")
    parser.add_argument("--cluster-name", default="brook", help="etcd key prefix")
    parser.add_argument("--advertise", default="",
                        help="HOST:PORT peers and clients dial (default: the bound address)")
    parser.add_argument("--ready-file", default="",
                        help='write {"address", "pid"} JSON here once serving')
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text lines, or one JSON object per line with context fields")
    # Prometheus /metrics (--metrics-listen) and its per-partition series bound (metrics.py).
    add_metrics_arguments(parser)
    # TLS, client authentication, tokens and etcd security (tls.py; README "Security").
    add_security_arguments(parser)
    # Authorization (authz/; README "Access control"): ACLs in etcd, super users, audit.
    add_authorization_arguments(parser)


def write_ready_file(
    path: str | Path, address: str, *, metrics_address: str = "", console_address: str = ""
) -> None:
    """Writes {"address", "pid"} (and "metrics_address" when serving /metrics,
    "console_address" when serving the web console) atomically (tmp + rename): readers
    never see half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    info: dict[str, Any] = {"address": address, "pid": os.getpid()}
    if metrics_address:
        info["metrics_address"] = metrics_address
    if console_address:
        info["console_address"] = console_address
    tmp.write_text(json.dumps(info))
    os.replace(tmp, target)


def advertised_address(bound_address: str, advertise: str) -> str:
    """--advertise, else the bound address with a wildcard host replaced by the hostname."""
    if advertise:
        return advertise
    host, _, port = bound_address.rpartition(":")
    if host in WILDCARD_HOSTS:
        host = socket.getfqdn()
    return f"{host}:{port}"


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancels a background task and waits for it to end; its failure does not stop a
    shutdown, so it is swallowed here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def run_main(
    name: str,
    build_parser: Callable[[], argparse.ArgumentParser],
    process_factory: Callable[[argparse.Namespace], Process],
    argv: list[str] | None,
    *,
    label: str | None = None,
) -> int:
    """Runs a process until SIGTERM/SIGINT: exit 0, or 1 (logged) when it fails with a
    BrookError. `name` tags the log lines (logger `brook.<name>`); `label` names the
    process in the failure message (default: `name`)."""
    args = build_parser().parse_args(argv)
    configure_logging(name, args.log_level, getattr(args, "log_format", "text"))

    async def run() -> None:
        # Built inside the loop: the process's clients and servers belong to it.
        process = process_factory(args)
        await run_until_signal(process.start, process.stop)

    try:
        asyncio.run(run())
    except BrookError as error:
        logging.getLogger(f"brook.{name}").error("%s failed: %s", label or name, error)
        return 1
    return 0
