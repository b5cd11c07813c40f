"""The web console: a read-only view of the cluster, served by the coordinator on its own
HTTP port (`--console-listen HOST:PORT`; empty, the default: off).

Pages (GET only, plain HTML with inline SVG rendered here: no JavaScript, no build step,
nothing fetched from elsewhere; a Content-Security-Policy forbids scripts):
- `/`: the cluster, its active roles, its nodes, under-replicated and offline partitions;
- `/topics?page=N`: topics, a page of TOPICS_PER_PAGE at a time;
- `/topic?name=T`: partitions with leaders, epochs, replicas, ISR health and the size of
  each replica on disk (StorageService/DescribeLogDirs of the nodes);
- `/groups?page=N`: consumer groups, GROUPS_PER_PAGE at a time;
- `/group?id=G`: members, assignments, committed offsets and lag (records and seconds),
  and a chart of each partition's lag over the last hour (GroupService/GetLagHistory);
- `/records?topic=T&partition=P&offset=O&limit=N&format=text|hex`: a record browser
  (RecordService/ReadRecords through a node, at most RECORDS_MAX records, values shown
  as text or hex, each cut at VALUE_CHARS_MAX characters).

Everything shown comes from the public gRPC APIs (Admin on this coordinator, Group on the
active group manager, Record and Storage on the nodes), called with this process's own
credentials. So in a secure cluster (a coordinator with `--tls-cert`) the console speaks
HTTPS with the coordinator's certificate and answers a viewer only what that viewer's own
principal may see (http_security.py): the viewer is authenticated like a gRPC caller (a
client certificate, or `Authorization: Bearer TOKEN` with a token of `--token-file` or a
JWT), and each page is checked with the ACL rule of the RPC whose data it shows (the
cluster page DescribeCluster's, a topic DescribeTopic's, the record browser ReadRecords'
read on the topic, a group DescribeGroup's; the topic and group lists leave out what the
viewer may not describe, and member ids need alter on the group, as DescribeGroup hides
them). Without TLS (local development, or `--no-http-tls`) nobody is checked;
`--console-token-file` can then require one static bearer token. Every value is
HTML-escaped.

Bounds: requests at most REQUEST_HEAD_MAX_BYTES of headers, CONCURRENT_MAX at once (503
above), each answered within PAGE_TIMEOUT_S; each gRPC call CALL_TIMEOUT_S.

Thread-safety: runs on the coordinator's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import html
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc

from brook.errors import BrookError, from_rpc_error
from brook.services.common.authz.enforce import installed
from brook.services.common.http_security import (
    HANDSHAKE_TIMEOUT_S,
    PLAINTEXT_HTTP,
    HttpSecurity,
    refusal_of,
)
from brook.services.common.principal import Principal
from brook.services.common.tls import peer_channel
from brook.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    groups_pb2,
    groups_pb2_grpc,
    record_service_pb2,
    record_service_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)

log = logging.getLogger("brook.console")

TOPICS_PER_PAGE = 50
GROUPS_PER_PAGE = 50
RECORDS_DEFAULT = 20
RECORDS_MAX = 100
VALUE_CHARS_MAX = 2000
TOPICS_LISTED_MAX = 100_000
SERIES_CHARTED_MAX = 20  # partitions drawn in one group's chart
POINTS_PER_SERIES = 240
REQUEST_HEAD_MAX_BYTES = 16 * 1024
CONCURRENT_MAX = 16
PAGE_TIMEOUT_S = 15.0
CALL_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
CHART_W, CHART_H, CHART_PAD = 900, 260, 40
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#16324f;color:#fff;padding:10px 20px}
header a{color:#fff;margin-right:18px;text-decoration:none;font-weight:600}
main{padding:16px 24px}
table{border-collapse:collapse;margin:8px 0 18px;background:#fff}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;font-size:14px}
th{background:#eef2f6}
.ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}
.warn{color:#b26a00;font-weight:600}
pre{margin:0;white-space:pre-wrap;word-break:break-all;font-size:13px}
.error{background:#fdecea;border:1px solid #f5c2c0;padding:10px}
form input{margin-right:8px}
"""

Handler = Callable[[dict[str, str]], Awaitable[str]]


class Viewer:
    """Who asked for the page being built (each connection is its own task, so a context
    variable holds it), and the checks of the RPC rules its data falls under."""

    def __init__(self, principal: Principal, peer: str) -> None:
        self.principal = principal
        self.peer = peer

    def require(self, method: str, *, topic: str | None = None, group: str | None = None) -> None:
        installed().require_as(self.principal, self.peer, method, topic=topic, group=group)

    def topics(self, names: list[str]) -> list[str]:
        return installed().visible_topics("brook.v1.AdminService/ListTopics", self.principal,
                                          names)  # fmt: skip

    def sees_group(self, group_id: str) -> bool:
        return installed().visible_groups("brook.v1.GroupService/ListGroups", self.principal,
                                          group_id)  # fmt: skip

    def sees_members(self, group_id: str) -> bool:
        return installed().shows_detail("brook.v1.GroupService/DescribeGroup", self.principal,
                                        group_id)  # fmt: skip


# None: the console checks nobody (no TLS: local development).
_VIEWER: contextvars.ContextVar[Viewer | None] = contextvars.ContextVar(
    "brook_console_viewer", default=None
)


def _require(method: str, *, topic: str | None = None, group: str | None = None) -> None:
    viewer = _VIEWER.get()
    if viewer is not None:
        viewer.require(method, topic=topic, group=group)


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def qs(**params: Any) -> str:
    return urllib.parse.urlencode({k: str(v) for k, v in params.items()})


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table; cells are HTML already (escape values with `esc`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str) -> str:
    nav = "".join(
        f'<a href="{href}">{label}</a>'
        for href, label in (("/", "Cluster"), ("/topics", "Topics"), ("/groups", "Groups"))
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)} - '
        f"Brook console</title><style>{STYLE}</style></head><body><header>"
        f'<a href="/">Brook</a>{nav}</header><main><h1>{esc(title)}</h1>{body}</main>'
        "</body></html>"
    )


def lag_chart(series: Sequence[groups_pb2.LagSeries], now_ms: int, window_ms: int) -> str:
    """An SVG chart of lag in records over the last `window_ms`: one polyline per series."""
    start = now_ms - window_ms
    highest = max((p.lag_records for s in series for p in s.points), default=0)
    top = max(1, highest)
    width, height, pad = CHART_W, CHART_H, CHART_PAD
    plot_w, plot_h = width - 2 * pad, height - 2 * pad
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" '
        f'viewBox="0 0 {width} {height + 20}" role="img" aria-label="lag in records">',
        f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccc"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = pad + plot_h * (1 - fraction)
        parts.append(
            f'<text x="{pad - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{esc(_number(top * fraction))}</text>"
        )
    for minutes in (60, 45, 30, 15, 0):
        x = pad + plot_w * (1 - minutes * 60_000 / window_ms)
        parts.append(
            f'<text x="{x:.1f}" y="{height - pad + 16}" font-size="11" text-anchor="middle">'
            f"{'now' if minutes == 0 else f'-{minutes} min'}</text>"
        )
    for index, one in enumerate(series):
        points = [
            (
                pad + plot_w * max(0.0, (p.time_ms - start) / window_ms),
                pad + plot_h * (1 - p.lag_records / top),
            )
            for p in one.points
            if p.time_ms >= start
        ]
        if not points:
            continue
        if len(points) == 1:  # a lone sample: a short flat segment, so it shows
            x, y = points[0]
            points = [(max(pad, x - 2), y), (x, y)]
        color = COLORS[index % len(COLORS)]
        text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(
            f'<polyline class="lag" data-series="{esc(one.topic)}-{one.partition}" '
            f'fill="none" stroke="{color}" stroke-width="2" points="{text}"/>'
        )
        parts.append(
            f'<text x="{pad + 10 + 150 * (index % 5)}" y="{height + 12 + 0 * index}" '
            f'font-size="12" fill="{color}">{esc(one.topic)}-{one.partition}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def _size(value: int) -> str:
    if value < 0:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{value} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BrookError("INVALID_REQUEST", f"{name} must be a number") from None
    return max(low, min(high, value))


class Console:
    """The console's HTTP server and pages."""

    def __init__(
        self,
        listen: str,
        admin_address: Callable[[], str],
        *,
        token: str = "",
        security: HttpSecurity = PLAINTEXT_HTTP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token and security.authenticator is not None:
            raise BrookError(
                "INVALID_CONFIG",
                "--console-token-file is for a console without"
                " TLS: a secure console authenticates viewers as gRPC callers"
                " (client certificate, --token-file or --jwks-file)",
            )
        self.listen = listen
        self._admin_address = admin_address
        self._token = token
        self._security = security
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._slots = asyncio.Semaphore(CONCURRENT_MAX)
        self._busy = 0
        self.routes: dict[str, Handler] = {
            "/": self.cluster_page,
            "/topics": self.topics_page,
            "/topic": self.topic_page,
            "/groups": self.groups_page,
            "/group": self.group_page,
            "/records": self.records_page,
        }

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> str:
        """Listens; returns the bound HOST:PORT."""
        host, _, port = self.listen.rpartition(":")
        self._server = await asyncio.start_server(
            self._serve, host or "127.0.0.1", int(port), limit=REQUEST_HEAD_MAX_BYTES
        )
        bound = self._server.sockets[0].getsockname()
        address = f"{host or '127.0.0.1'}:{bound[1]}"
        log.info("web console on %s://%s/", self._security.scheme, address)
        return address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    # -- HTTP --------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._security.tls is not None:
                # Per connection, so a rotated certificate serves the next handshake.
                await writer.start_tls(self._security.tls.current(),
                                       ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)  # fmt: skip
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError):
                await self._respond(writer, 400, "bad request")
                return
            status, body, extra = await self._answer(head, writer)
            await self._respond(writer, status, body, extra)
        except (ConnectionError, OSError, TimeoutError):
            pass  # a failed handshake or a client gone
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _viewer(
        self, headers: dict[str, str], writer: asyncio.StreamWriter | None
    ) -> Viewer | None:
        """Who asks (BrookError UNAUTHENTICATED), or None when the console checks nobody."""
        if self._security.authenticator is None:
            return None
        ssl_object = writer.get_extra_info("ssl_object") if writer is not None else None
        peer_der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        address = writer.get_extra_info("peername") if writer is not None else None
        peer = f"http:{address[0]}:{address[1]}" if address else "http:"
        principal = self._security.authenticate(headers.get("authorization"), peer_der)
        return Viewer(principal, peer)

    async def _answer(
        self, head: bytes, writer: asyncio.StreamWriter | None = None
    ) -> tuple[int, str, dict[str, str]]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return 400, "bad request", {}
        method, target, _ = parts
        if method != "GET":
            return 405, "the console is read-only: GET only", {"Allow": "GET"}
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if self._token:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
                return 401, "a bearer token is required", {"WWW-Authenticate": "Bearer"}
        try:
            _VIEWER.set(self._viewer(headers, writer))
        except BrookError as error:
            refusal = refusal_of(error)
            return refusal.status, refusal.message, refusal.headers
        url = urllib.parse.urlsplit(target)
        handler = self.routes.get(url.path)
        if handler is None:
            return 404, page("Not found", "<p>No such page.</p>"), {}
        if self._busy >= CONCURRENT_MAX:
            return 503, "the console is busy; try again", {"Retry-After": "1"}
        params = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items() if v}
        self._busy += 1
        try:
            async with self._slots:
                body = await asyncio.wait_for(handler(params), PAGE_TIMEOUT_S)
            return 200, body, {}
        except BrookError as error:
            message = f'<p class="error">{esc(error.reason)}: {esc(error.message)}</p>'
            status = {"INVALID_REQUEST": 400, "PERMISSION_DENIED": 403}.get(error.reason, 502)
            return status, page("Error", message), {}
        except TimeoutError:
            return 504, page("Error", '<p class="error">the cluster did not answer</p>'), {}
        except Exception:
            log.exception("console page %s failed", url.path)
            return 500, page("Error", '<p class="error">internal error</p>'), {}
        finally:
            self._busy -= 1

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter, status: int, body: str, extra: dict[str, str] | None = None
    ) -> None:
        data = body.encode()
        reason = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            405: "Method Not Allowed",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }.get(status, "Error")
        kind = "text/html" if body.startswith("<!DOCTYPE") else "text/plain"
        headers = {
            "Content-Type": f"{kind}; charset=utf-8",
            "Content-Length": str(len(data)),
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "img-src 'self'; form-action 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "Connection": "close",
            **(extra or {}),
        }
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write(head.encode("latin-1") + b"\r\n" + data)
        await writer.drain()

    # -- gRPC --------------------------------------------------------------------------
    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if len(self._channels) >= 256:  # bounded: nodes come and go
                old = self._channels.pop(next(iter(self._channels)))
                asyncio.get_running_loop().create_task(old.close())
            channel = self._channels[address] = peer_channel(address)
        return channel

    @staticmethod
    async def _call(method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    def _admin(self) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self._channel(self._admin_address()))

    async def _cluster(self) -> admin_pb2.DescribeClusterResponse:
        return await self._call(self._admin().DescribeCluster, admin_pb2.DescribeClusterRequest())

    async def _groups_stub(self) -> groups_pb2_grpc.GroupServiceStub:
        cluster = await self._cluster()
        if not cluster.group_manager.address:
            raise BrookError("NOT_COORDINATOR", "no group manager is active")
        return groups_pb2_grpc.GroupServiceStub(self._channel(cluster.group_manager.address))

    async def _topic_names(self) -> list[str]:
        names: list[str] = []
        token = ""
        while len(names) < TOPICS_LISTED_MAX:
            response = await self._call(
                self._admin().ListTopics,
                admin_pb2.ListTopicsRequest(page_size=1000, page_token=token),
            )
            names.extend(t.name for t in response.topics)
            token = response.next_page_token
            if not token:
                break
        viewer = _VIEWER.get()
        return sorted(names if viewer is None else viewer.topics(names))

    # -- pages -------------------------------------------------------------------------
    async def cluster_page(self, params: dict[str, str]) -> str:
        _require("brook.v1.AdminService/DescribeCluster")
        cluster = await self._cluster()
        under, offline = cluster.under_replicated_partitions, cluster.offline_partitions
        health = (
            '<span class="ok">healthy</span>'
            if not under and not offline and cluster.group_manager.address
            else '<span class="bad">unhealthy</span>'
        )
        summary = table(
            [
                "cluster",
                "health",
                "coordinator",
                "group manager",
                "nodes",
                "topics",
                "partitions",
                "under-replicated",
                "offline",
            ],
            [
                [
                    esc(cluster.cluster_id),
                    health,
                    esc(cluster.coordinator.address or "none"),
                    esc(cluster.group_manager.address or "none"),
                    f'<span id="node-count">{len(cluster.nodes)}</span>',
                    f'<span id="topic-count">{cluster.topic_count}</span>',
                    f'<span id="partition-count">{cluster.partition_count}</span>',
                    f'<span id="under-replicated-count">{len(under)}</span>',
                    f'<span id="offline-count">{len(offline)}</span>',
                ]
            ],
        )
        nodes = table(
            ["node", "address", "rack", "replicas", "leaders"],
            [
                [
                    esc(n.node.node_id),
                    esc(n.node.address),
                    esc(n.node.rack or "-"),
                    esc(n.replica_count),
                    esc(n.leader_count),
                ]
                for n in sorted(cluster.nodes, key=lambda n: n.node.node_id)
            ],
        )

        def refs(items: Sequence[Any]) -> str:
            if not items:
                return "<p>none</p>"
            shown = items[:200]
            links = ", ".join(
                f'<a href="/topic?{qs(name=p.topic)}">{esc(p.topic)}-{p.partition}</a>'
                for p in shown
            )
            more = f" and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
            return f"<p>{links}{more}</p>"

        return page(
            "Cluster",
            summary
            + "<h2>Nodes</h2>"
            + nodes
            + "<h2>Under-replicated partitions</h2>"
            + refs(under)
            + "<h2>Offline partitions</h2>"
            + refs(offline),
        )

    async def topics_page(self, params: dict[str, str]) -> str:
        names = await self._topic_names()
        pages = max(1, math.ceil(len(names) / TOPICS_PER_PAGE))
        number = _int_param(params, "page", 1, 1, pages)
        shown = names[(number - 1) * TOPICS_PER_PAGE : number * TOPICS_PER_PAGE]
        admin = self._admin()
        described = await asyncio.gather(
            *(
                self._call(admin.DescribeTopic, admin_pb2.DescribeTopicRequest(name=n))
                for n in shown
            ),
            return_exceptions=True,
        )
        rows = []
        for name, answer in zip(shown, described, strict=True):
            link = f'<a class="topic" href="/topic?{qs(name=name)}">{esc(name)}</a>'
            if isinstance(answer, BaseException):
                rows.append([link, "-", "-", "-", "-", f'<span class="bad">{esc(answer)}</span>'])
                continue
            topic = answer.topic
            under = sum(1 for p in topic.partitions if len(p.isr_ids) < len(p.replica_ids))
            offline = sum(1 for p in topic.partitions if p.leader_id < 0)
            state = (
                '<span class="ok">ok</span>'
                if not under and not offline
                else f'<span class="bad">{under} under-replicated, {offline} offline</span>'
            )
            rows.append(
                [
                    link,
                    esc(topic.partition_count),
                    esc(topic.replication_factor),
                    esc(under),
                    esc(offline),
                    state,
                ]
            )
        return page(
            "Topics",
            f"<p>{len(names)} topics; page {number} of {pages}</p>"
            + table(
                ["topic", "partitions", "replication", "under-replicated", "offline", "health"],
                rows,
            )
            + _pager("/topics", number, pages),
        )

    async def topic_page(self, params: dict[str, str]) -> str:
        name = params.get("name", "")
        if not name:
            raise BrookError("INVALID_REQUEST", "name the topic: /topic?name=T")
        _require("brook.v1.AdminService/DescribeTopic", topic=name)
        admin = self._admin()
        topic = (
            await self._call(admin.DescribeTopic, admin_pb2.DescribeTopicRequest(name=name))
        ).topic
        cluster = await self._cluster()
        sizes = await self._replica_sizes(cluster, name)
        rows = []
        for p in topic.partitions:
            if p.leader_id < 0:
                health = '<span class="bad">offline</span>'
            elif len(p.isr_ids) < len(p.replica_ids):
                health = '<span class="warn">under-replicated</span>'
            else:
                health = '<span class="ok">in sync</span>'
            size = ", ".join(
                f"{r}: {_size(sizes.get((r, p.partition), -1))}" for r in p.replica_ids
            )
            browse = (
                f'<a href="/records?{qs(topic=name, partition=p.partition, offset=0)}">records</a>'
            )
            rows.append(
                [
                    esc(p.partition),
                    esc(p.leader_id if p.leader_id >= 0 else "none"),
                    esc(p.leader_epoch),
                    esc(list(p.replica_ids)),
                    esc(list(p.isr_ids)),
                    health,
                    esc(size),
                    browse,
                ]
            )
        configs = table(
            ["config", "value"], [[esc(k), esc(v)] for k, v in sorted(topic.configs.items())]
        )
        return page(
            f"Topic {name}",
            f"<p>id {esc(topic.topic_id)}, {topic.partition_count} partitions, replication "
            f"{topic.replication_factor}</p>"
            + table(
                [
                    "partition",
                    "leader",
                    "epoch",
                    "replicas",
                    "ISR",
                    "health",
                    "size on disk (node: bytes)",
                    "",
                ],
                rows,
            )
            + "<h2>Configs (overrides)</h2>"
            + configs,
        )

    async def _replica_sizes(
        self, cluster: admin_pb2.DescribeClusterResponse, topic: str
    ) -> dict[tuple[int, int], int]:
        async def ask(node: Any) -> tuple[int, storage_pb2.DescribeLogDirsResponse | None]:
            stub = storage_pb2_grpc.StorageServiceStub(self._channel(node.address))
            try:
                answer = await self._call(
                    stub.DescribeLogDirs,
                    storage_pb2.DescribeLogDirsRequest(topic=topic, max_partitions=10_000),
                )
            except BrookError:
                return node.node_id, None
            return node.node_id, answer

        answers = await asyncio.gather(*(ask(n.node) for n in cluster.nodes[:1000]))
        return {
            (node_id, r.partition): r.size_bytes
            for node_id, answer in answers
            if answer is not None
            for r in answer.replicas
        }

    async def groups_page(self, params: dict[str, str]) -> str:
        stub = await self._groups_stub()
        groups: list[groups_pb2.GroupSummary] = []
        token = ""
        for _ in range(100):  # pages of 1,000: bounded
            response = await self._call(
                stub.ListGroups, groups_pb2.ListGroupsRequest(page_size=1000, page_token=token)
            )
            groups.extend(response.groups)
            token = response.next_page_token
            if not token:
                break
        viewer = _VIEWER.get()
        if viewer is not None:
            groups = [g for g in groups if viewer.sees_group(g.group_id)]
        groups.sort(key=lambda g: g.group_id)
        pages = max(1, math.ceil(len(groups) / GROUPS_PER_PAGE))
        number = _int_param(params, "page", 1, 1, pages)
        shown = groups[(number - 1) * GROUPS_PER_PAGE : number * GROUPS_PER_PAGE]
        rows = [
            [
                f'<a class="group" href="/group?{qs(id=g.group_id)}">{esc(g.group_id)}</a>',
                esc(groups_pb2.GroupState.Name(g.state).removeprefix("GROUP_STATE_").lower()),
                esc(g.member_count),
                esc(g.assignor or "-"),
            ]
            for g in shown
        ]
        return page(
            "Consumer groups",
            f"<p>{len(groups)} groups; page {number} of {pages}</p>"
            + table(["group", "state", "members", "assignor"], rows)
            + _pager("/groups", number, pages),
        )

    async def group_page(self, params: dict[str, str]) -> str:
        group_id = params.get("id", "")
        if not group_id:
            raise BrookError("INVALID_REQUEST", "name the group: /group?id=G")
        _require("brook.v1.GroupService/DescribeGroup", group=group_id)
        viewer = _VIEWER.get()
        members_shown = viewer is None or viewer.sees_members(group_id)
        stub = await self._groups_stub()
        group = (
            await self._call(
                stub.DescribeGroup,
                groups_pb2.DescribeGroupRequest(group_id=group_id, include_lag=True),
            )
        ).group
        history = await self._call(
            stub.GetLagHistory,
            groups_pb2.GetLagHistoryRequest(
                group_id=group_id, max_series=SERIES_CHARTED_MAX, max_points=POINTS_PER_SERIES
            ),
        )
        if not members_shown:  # as DescribeGroup answers this viewer: no member ids
            for member in group.members:
                member.member_id = ""
                member.ClearField("member_epoch")
            for offset in group.offsets:
                offset.member_id = ""
        state = groups_pb2.GroupState.Name(group.state).removeprefix("GROUP_STATE_").lower()
        total = sum(o.lag for o in group.offsets if o.lag >= 0)
        members = table(
            ["member", "client id", "host", "assigned", "target"],
            [
                [
                    esc(m.member_id or "-"),
                    esc(m.client_id),
                    esc(m.client_host),
                    esc(_tps(m.assignment)),
                    esc(_tps(m.target_assignment)),
                ]
                for m in group.members
            ],
        )
        offsets = table(
            [
                "topic",
                "partition",
                "committed",
                "log end",
                "lag (records)",
                "lag (seconds)",
                "member",
            ],
            [
                [
                    esc(o.topic),
                    esc(o.partition),
                    esc(o.committed_offset if o.committed_offset >= 0 else "-"),
                    esc(o.log_end_offset if o.log_end_offset >= 0 else "-"),
                    f'<span class="lag">{esc(o.lag if o.lag >= 0 else "-")}</span>',
                    esc(f"{o.lag_ms / 1000:.1f}" if o.HasField("lag_ms") else "-"),
                    esc(o.member_id or "-"),
                ]
                for o in group.offsets
            ],
        )
        now_ms = int(self._clock() * 1000)
        chart = lag_chart(history.series, now_ms, 3_600_000)
        note = " (more partitions than charted)" if history.truncated else ""
        return page(
            f"Group {group_id}",
            f"<p>state {esc(state)}, {len(group.members)} members, total lag "
            f'<span id="total-lag">{total}</span> records</p>'
            + "<h2>Lag over the last hour (records)"
            + esc(note)
            + "</h2>"
            + chart
            + "<h2>Offsets and lag</h2>"
            + offsets
            + "<h2>Members</h2>"
            + members,
        )

    async def records_page(self, params: dict[str, str]) -> str:
        topic = params.get("topic", "")
        if not topic:
            raise BrookError("INVALID_REQUEST", "name the topic: /records?topic=T&partition=P")
        _require("brook.v1.RecordService/ReadRecords", topic=topic)
        partition = _int_param(params, "partition", 0, 0, 1 << 31)
        offset = _int_param(params, "offset", 0, 0, 1 << 62)
        limit = _int_param(params, "limit", RECORDS_DEFAULT, 1, RECORDS_MAX)
        shape = "hex" if params.get("format") == "hex" else "text"
        cluster = await self._cluster()
        if not cluster.nodes:
            raise BrookError("LEADER_NOT_AVAILABLE", "no storage node is live")
        stub = record_service_pb2_grpc.RecordServiceStub(
            self._channel(cluster.nodes[0].node.address)
        )  # any node: the record API forwards to the leader
        answer = await self._call(
            stub.ReadRecords,
            record_service_pb2.ReadRecordsRequest(
                topic=topic,
                partition=partition,
                offset=offset,
                max_records=limit,
                max_wait_ms=0,
            ),
        )
        rows = [
            [
                esc(r.offset),
                esc(_when(r.timestamp_ms)),
                f"<pre>{esc(_show(r.key, shape)) if r.HasField('key') else '<i>null</i>'}</pre>",
                f'<pre class="value">{esc(_show(r.value, shape))}</pre>',
            ]
            for r in answer.records
        ]
        form = (
            '<form method="get" action="/records">'
            f'<input type="hidden" name="topic" value="{esc(topic)}">'
            f'partition <input name="partition" size="4" value="{partition}">'
            f'offset <input name="offset" size="10" value="{offset}">'
            f'records <input name="limit" size="4" value="{limit}">'
            '<select name="format">'
            f'<option value="text"{" selected" if shape == "text" else ""}>text</option>'
            f'<option value="hex"{" selected" if shape == "hex" else ""}>hex</option>'
            '</select><input type="submit" value="Read"></form>'
        )
        following = ""
        if answer.records:
            more = qs(
                topic=topic,
                partition=partition,
                offset=answer.next_offset,
                limit=limit,
                format=shape,
            )
            following = f'<p><a href="/records?{more}">next records</a></p>'
        return page(
            f"Records of {topic}-{partition}",
            form + f"<p>log start {answer.log_start_offset}, high watermark "
            f"{answer.high_watermark}; showing {len(answer.records)} from offset {offset}</p>"
            + table(["offset", "timestamp", "key", "value"], rows)
            + following,
        )


def _pager(path: str, number: int, pages: int) -> str:
    links = []
    if number > 1:
        links.append(f'<a href="{path}?{qs(page=number - 1)}">previous</a>')
    if number < pages:
        links.append(f'<a href="{path}?{qs(page=number + 1)}">next</a>')
    return "<p>" + " | ".join(links) + "</p>"


def _tps(items: Iterable[Any]) -> str:
    return (
        " ".join(f"{i.topic}:{','.join(str(p) for p in sorted(i.partitions))}" for i in items)
        or "-"
    )


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _show(data: bytes, shape: str) -> str:
    """A value as text (undecodable bytes replaced) or hex, cut at VALUE_CHARS_MAX."""
    if shape == "hex":
        text = data[: VALUE_CHARS_MAX // 3 + 1].hex(" ")
    else:
        text = data[: VALUE_CHARS_MAX * 4].decode("utf-8", errors="replace")
    if len(text) > VALUE_CHARS_MAX:
        return text[:VALUE_CHARS_MAX] + f"... ({len(data)} bytes)"
    return text
