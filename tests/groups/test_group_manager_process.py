"""Integration: real group manager processes (active + standby), a real coordinator (for
GetMetadata), real etcd, and GroupConsumers in their own processes.

Storage nodes are not needed for membership: topics are written to etcd directly, so
partitions have no leader and consumers fetch nothing; what is checked is who owns which
partition when, from the consumers' own rebalance callbacks.

The membership tests also run secure (`@secure_too`: the module's cluster with TLS + mTLS
and `--authorizer acl`, the consumers as user:alice holding read on the topic and on
their groups only; tests/harness/secure.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from brook.client.cli import groups as cli_groups
from brook.client.groups import GroupConsumer
from brook.errors import BrookError, from_partition_error, from_rpc_error
from brook.services.metadata import MetadataStore, NodeInfo, PartitionRecord, TopicRecord
from brook.v1 import common_pb2, groups_pb2, groups_pb2_grpc, storage_pb2, storage_pb2_grpc
from tests.harness.cluster import LocalCluster
from tests.harness.secure import CLIENT, SECURITY_MODES, cluster_options, start_secured

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GROUP_ARGS = ["--lease-ttl-s", "2", "--heartbeat-interval-ms", "200"]
TOPIC = "events"
PARTITIONS = 12
WAIT_S = 20.0
REPO = Path(__file__).resolve().parents[2]

TP = tuple[str, int]

# The groups of the tests that also run secure, and what their consumers may do there.
SECURE_GROUPS = ("exclusive", "zombie", "static", "survivors")
CLIENT_ACLS = [("read", "topic", TOPIC), *(("read", "group", g) for g in SECURE_GROUPS)]


def secure_too(test: Callable[..., Any]) -> Callable[..., Any]:
    """Runs the test on the secure cluster too (pytest_generate_tests, below)."""
    test.secure_too = True  # type: ignore[attr-defined]
    return test


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The module's cluster as an indirect parameter: every test runs on the plaintext
    one, `secure_too` tests on the secure one as well (one cluster per mode)."""
    if "cluster" in metafunc.fixturenames:
        secure = getattr(metafunc.function, "secure_too", False)
        metafunc.parametrize("cluster", SECURITY_MODES if secure else ["plaintext"],
                             indirect=True)  # fmt: skip


# -- the cluster (shared by the module: tests use distinct group ids) --------------------
@pytest.fixture(scope="module")
def cluster(
    etcd: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalCluster]:
    name = f"g{uuid.uuid4().hex[:10]}"
    mode = str(request.param)
    cluster = LocalCluster(etcd, tmp_path_factory.mktemp(f"groups-{mode}"), name,
                           **cluster_options(mode))  # fmt: skip
    cluster.add_coordinator()
    cluster.add_groups("groups-a", GROUP_ARGS)
    cluster.add_groups("groups-b", GROUP_ARGS)

    async def create_topics() -> None:
        store = MetadataStore(etcd, cluster_name=name)
        await store.connect()
        try:
            for topic, count in ((TOPIC, PARTITIONS), ("other", 2)):
                record = TopicRecord(topic, uuid.uuid4().hex, count, 1)
                await store.create_topic(
                    record,
                    [PartitionRecord(topic, p, record.topic_id, (1,)) for p in range(count)],
                )
        finally:
            await store.close()

    try:
        asyncio.run(create_topics())
        start_secured(cluster, CLIENT_ACLS, as_default=False)
        yield cluster
    finally:
        cluster.stop()
        print(cluster.dump_logs())


async def role_holder(cluster: LocalCluster) -> str:
    """The address of the active group manager, as etcd says (waits, bounded)."""
    store = MetadataStore(cluster.etcd, cluster_name=cluster.cluster_name)
    await store.connect()
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            holder = await store.get_role_holder("groups")
            if holder is not None:
                return holder.address
            await asyncio.sleep(0.1)  # polling a condition with a bounded deadline
    finally:
        await store.close()
    raise TimeoutError("no active group manager")


def manager_name(cluster: LocalCluster, address: str) -> str:
    return next(n for n, m in cluster.processes.items() if m.address == address)


@pytest.fixture
async def stubs(cluster: LocalCluster) -> AsyncIterator[Callable[[str], Any]]:
    channels: dict[str, grpc.aio.Channel] = {}

    def stub(address: str) -> groups_pb2_grpc.GroupServiceStub:
        if address not in channels:
            channels[address] = grpc.aio.insecure_channel(address)
        return groups_pb2_grpc.GroupServiceStub(channels[address])

    try:
        yield stub
    finally:
        for channel in channels.values():
            await channel.close()


async def call(method: Any, request: Any) -> Any:
    try:
        return await method(request, timeout=5)
    except grpc.aio.AioRpcError as error:
        raise from_rpc_error(error) from None


async def heartbeat(stub: Any, group: str, member_id: str = "", epoch: int = 0, **kw: Any) -> Any:
    kw.setdefault("subscribed_topic_names", [TOPIC])
    return await call(
        stub.Heartbeat,
        groups_pb2.HeartbeatRequest(group_id=group, member_id=member_id, member_epoch=epoch, **kw),
    )


# -- consumer processes ----------------------------------------------------------------
class ConsumerProc:
    """One consumer_proc subprocess and the events it printed."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.killed_at: float | None = None
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))

    def owned(self) -> set[TP]:
        owned: set[TP] = set()
        for event in self.events:
            partitions = {(t, p) for t, p in event.get("partitions", [])}
            if event["event"] == "assigned":
                owned |= partitions
            elif event["event"] in ("revoked", "lost"):
                owned -= partitions
        return owned

    def heartbeats(self) -> int:
        counts = [e["count"] for e in self.events if e["event"] == "heartbeats"]
        return counts[-1] if counts else 0

    def count(self, kind: str, after: float = 0.0) -> int:
        return sum(1 for e in self.events if e["event"] == kind and e["t"] > after)


class Consumers:
    def __init__(self, bootstrap: str, group: str, env: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.env = env  # the consumers' credentials in a secure cluster ($BROOK_TLS_*)
        self.procs: dict[str, ConsumerProc] = {}
        self.retired: list[ConsumerProc] = []

    async def start(self, name: str, *extra: str) -> ConsumerProc:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.groups.consumer_proc",
            "--bootstrap",
            self.bootstrap,
            "--group",
            self.group,
            "--topic",
            TOPIC,
            *extra,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            start_new_session=True,
        )
        proc = ConsumerProc(name, process)
        if name in self.procs:
            self.retired.append(self.procs[name])
        self.procs[name] = proc
        return proc

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, sig)
        await asyncio.wait_for(proc.process.wait(), WAIT_S)
        await proc.reader
        if sig == signal.SIGKILL:
            proc.killed_at = time.monotonic()

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.process.wait(), WAIT_S)
            proc.reader.cancel()

    async def wait(
        self, predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.summary()}")
            await asyncio.sleep(0.05)  # polling a condition with a bounded deadline

    def live(self) -> list[ConsumerProc]:
        return [p for p in self.procs.values() if p.process.returncode is None]

    def balanced(self, count: int) -> bool:
        live = self.live()
        owned = [p.owned() for p in live]
        union = set().union(*owned) if owned else set()
        sizes = sorted(len(o) for o in owned)
        return (
            len(live) == count
            and union == {(TOPIC, p) for p in range(PARTITIONS)}
            and sum(sizes) == PARTITIONS
            and sizes[-1] - sizes[0] <= 1
        )

    def summary(self) -> str:
        return ", ".join(f"{p.name}={sorted(q for _, q in p.owned())}" for p in self.live())

    def check_exclusive(self) -> None:
        """Over the whole run, no partition was ever owned by two consumers at once: an
        assignment starts at its "assigned" line and ends at "revoked"/"lost" or the
        process's SIGKILL."""
        timeline: list[tuple[float, int, str, str, set[TP]]] = []
        for proc in [*self.retired, *self.procs.values()]:
            for event in proc.events:
                kind = event["event"]
                if kind in ("assigned", "revoked", "lost"):
                    partitions = {(t, p) for t, p in event["partitions"]}
                    order = 1 if kind == "assigned" else 0
                    timeline.append((event["t"], order, id_of(proc), kind, partitions))
            if proc.killed_at is not None:
                timeline.append((proc.killed_at, 0, id_of(proc), "killed", set()))
        owner: dict[TP, str] = {}
        for _t, _order, who, kind, partitions in sorted(timeline, key=lambda e: (e[0], e[1])):
            if kind == "assigned":
                for tp in partitions:
                    assert tp not in owner, f"{tp} given to {who} while {owner[tp]} owns it"
                    owner[tp] = who
            elif kind == "killed":
                for tp in [tp for tp, w in owner.items() if w == who]:
                    del owner[tp]
            else:
                for tp in partitions:
                    assert owner.get(tp) == who, f"{who} released {tp} owned by {owner.get(tp)}"
                    del owner[tp]


def id_of(proc: ConsumerProc) -> str:
    return f"{proc.name}#{proc.process.pid}"


@pytest.fixture
async def consumers(cluster: LocalCluster) -> AsyncIterator[Callable[[str], Consumers]]:
    made: list[Consumers] = []
    env = cluster.client_security(CLIENT).env if cluster.secure else {}

    def make(group: str) -> Consumers:
        group_consumers = Consumers(cluster.address("coordinator"), group, env)
        made.append(group_consumers)
        return group_consumers

    try:
        yield make
    finally:
        for group_consumers in made:
            await group_consumers.stop_all()


# -- tests -----------------------------------------------------------------------------
async def test_bad_input_is_refused(cluster: LocalCluster, stubs: Callable[[str], Any]) -> None:
    """Invalid regex, commits from a fenced member and for an unknown topic, reset and
    delete of an active group, and any call to the standby each fail with their reason."""
    active = await role_holder(cluster)
    standby = next(
        m.address
        for n, m in cluster.processes.items()
        if n.startswith("groups") and m.address != active
    )
    stub = stubs(active)
    with pytest.raises(BrookError, match="INVALID_REGEX"):
        await heartbeat(stub, "bad", subscribed_topic_names=[], subscribed_topic_regex="ev(")
    first = await heartbeat(stub, "bad")
    # A second member joins: the group epoch moves; the first member's old epoch is
    # accepted once more (lost response) but an invented one is fenced.
    await heartbeat(stub, "bad")
    with pytest.raises(BrookError, match="FENCED_MEMBER_EPOCH"):
        await call(
            stub.CommitOffsets,
            groups_pb2.CommitOffsetsRequest(
                group_id="bad",
                member_id=first.member_id,
                member_epoch=first.member_epoch + 7,
                offsets=[groups_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=1)],
            ),
        )
    response = await call(
        stub.CommitOffsets,
        groups_pb2.CommitOffsetsRequest(
            group_id="bad",
            member_id=first.member_id,
            member_epoch=first.member_epoch,
            offsets=[groups_pb2.OffsetCommit(topic="nope", partition=0, offset=1)],
        ),
    )
    error = from_partition_error(response.results[0].error)
    assert error is not None and error.reason == "TOPIC_NOT_FOUND"
    with pytest.raises(BrookError, match="GROUP_NOT_EMPTY"):
        await call(
            stub.ResetOffsets, groups_pb2.ResetOffsetsRequest(group_id="bad", to_earliest=True)
        )
    with pytest.raises(BrookError, match="GROUP_NOT_EMPTY"):
        await call(stub.DeleteGroup, groups_pb2.DeleteGroupRequest(group_id="bad"))
    with pytest.raises(BrookError, match="UNKNOWN_MEMBER_ID"):
        await call(
            stub.CommitOffsets,
            groups_pb2.CommitOffsetsRequest(
                group_id="bad",
                member_epoch=-1,
                offsets=[groups_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=1)],
            ),
        )
    # A member id without its epoch: 0 is a real epoch, so it is refused, not guessed.
    with pytest.raises(BrookError, match="INVALID_REQUEST"):
        await call(
            stub.CommitOffsets,
            groups_pb2.CommitOffsetsRequest(
                group_id="bad",
                member_id=first.member_id,
                offsets=[groups_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=1)],
            ),
        )
    with pytest.raises(BrookError, match="NOT_COORDINATOR"):
        await heartbeat(stubs(standby), "bad")


async def test_commit_without_epochs_is_a_non_member_commit(
    cluster: LocalCluster, stubs: Callable[[str], Any]
) -> None:
    """Issue 10, trap 1: a commit that leaves member_id and member_epoch out is a
    non-member commit (unset, not epoch 0), and an unset leader_epoch is stored as -1."""
    stub = stubs(await role_holder(cluster))
    await call(
        stub.CommitOffsets,
        groups_pb2.CommitOffsetsRequest(
            group_id="plain",
            offsets=[groups_pb2.OffsetCommit(topic=TOPIC, partition=0, offset=3)],
        ),
    )
    fetched = await call(
        stub.FetchOffsets,
        groups_pb2.FetchOffsetsRequest(
            group_id="plain", partitions=[common_pb2.TopicPartitions(topic=TOPIC, partitions=[0])]
        ),
    )
    stored = fetched.offsets[0]
    assert (stored.offset, stored.leader_epoch) == (3, -1)


async def test_standby_takes_over_with_members_and_offsets_intact(
    cluster: LocalCluster, stubs: Callable[[str], Any]
) -> None:
    """kill -9 the active group manager: the standby takes over within the lease TTL,
    the member keeps its id, epoch and partitions (no rejoin), and every acknowledged
    commit is still there."""
    active = await role_holder(cluster)
    member = await heartbeat(stubs(active), "failover")
    offsets = [
        groups_pb2.OffsetCommit(topic=TOPIC, partition=p, offset=100 + p, metadata=f"m{p}")
        for p in range(PARTITIONS)
    ]
    await call(
        stubs(active).CommitOffsets,
        groups_pb2.CommitOffsetsRequest(
            group_id="failover",
            member_id=member.member_id,
            member_epoch=member.member_epoch,
            offsets=offsets,
        ),
    )
    killed = manager_name(cluster, active)
    cluster.kill(killed, signal.SIGKILL)
    try:
        new_active = await role_holder(cluster)
        deadline = time.monotonic() + WAIT_S
        while True:  # the new holder answers once it has loaded the groups
            try:
                again = await heartbeat(
                    stubs(new_active),
                    "failover",
                    member.member_id,
                    member.member_epoch,
                    owned_partitions=member.assignment,
                )
                break
            except BrookError as error:
                assert error.reason in ("NOT_COORDINATOR", "TRANSPORT"), error
                assert time.monotonic() < deadline, "standby never took over"
                new_active = await role_holder(cluster)
                await asyncio.sleep(0.1)  # polling a condition with a bounded deadline
        assert new_active != active
        assert again.member_id == member.member_id
        assert again.member_epoch == member.member_epoch
        assert list(again.assignment) == list(member.assignment)
        fetched = await call(
            stubs(new_active).FetchOffsets, groups_pb2.FetchOffsetsRequest(group_id="failover")
        )
        assert {(o.topic, o.partition, o.offset, o.metadata) for o in fetched.offsets} == {
            (TOPIC, p, 100 + p, f"m{p}") for p in range(PARTITIONS)
        }
    finally:
        cluster.restart(killed, keep_address=False)


@secure_too
async def test_consumers_share_partitions_exclusively(
    cluster: LocalCluster, consumers: Callable[[str], Consumers]
) -> None:
    """3 consumer processes on 12 partitions: each owns 4 and, over the whole run, no
    partition is owned by two at once. A 4th joining moves only what it takes (each old
    member revokes one partition and is assigned nothing). A SIGKILLed consumer's
    partitions move to the survivors within its session timeout (plus a heartbeat)."""
    group = consumers("exclusive")
    for name in ("c1", "c2", "c3"):
        await group.start(name, "--session-timeout-ms", "2000")
    await group.wait(lambda: group.balanced(3), "3 consumers with 4 partitions each")
    before = {name: proc.owned() for name, proc in group.procs.items()}
    joined_at = time.monotonic()
    await group.start("c4", "--session-timeout-ms", "2000")
    await group.wait(lambda: group.balanced(4), "4 consumers with 3 partitions each")
    newcomer = group.procs["c4"].owned()
    for name in ("c1", "c2", "c3"):
        proc = group.procs[name]
        assert proc.count("assigned", after=joined_at) == 0, f"{name} was given partitions"
        assert proc.count("revoked", after=joined_at) == 1, f"{name} revoked more than once"
        assert before[name] - proc.owned() <= newcomer
        assert len(before[name] - proc.owned()) == 1
    victim = group.procs["c2"].owned()
    await group.kill("c2")
    killed_at = group.procs["c2"].killed_at
    assert killed_at is not None
    await group.wait(lambda: group.balanced(3), "the survivors to take c2's partitions")
    moved_at = max(
        e["t"]
        for p in group.live()
        for e in p.events
        if e["event"] == "assigned" and {(t, q) for t, q in e["partitions"]} & victim
    )
    assert moved_at - killed_at < 2.0 + 1.5, f"took {moved_at - killed_at:.1f}s"
    group.check_exclusive()
    assert all(p.count("lost") == 0 for p in group.live())


@secure_too
async def test_paused_consumer_is_fenced_and_rejoins(
    cluster: LocalCluster, consumers: Callable[[str], Consumers]
) -> None:
    """A consumer frozen (SIGSTOP) past its session timeout is removed: the other takes
    all 12 partitions. Resumed (SIGCONT), its heartbeat is refused, it reports the old
    partitions as lost (never as revoked, so it commits nothing for them), rejoins, and
    the group is balanced again."""
    group = consumers("zombie")
    for name in ("z1", "z2"):
        await group.start(name, "--session-timeout-ms", "1500")
    await group.wait(lambda: group.balanced(2), "2 consumers with 6 each")
    zombie = group.procs["z1"]
    frozen = zombie.owned()
    frozen_at = time.monotonic()
    os.killpg(zombie.process.pid, signal.SIGSTOP)
    try:
        await group.wait(
            lambda: len(group.procs["z2"].owned()) == PARTITIONS, "z2 to take everything"
        )
    finally:
        os.killpg(zombie.process.pid, signal.SIGCONT)
    await group.wait(lambda: zombie.count("lost") == 1, "z1 to notice it was removed")
    lost = next(e for e in zombie.events if e["event"] == "lost")
    assert {(t, p) for t, p in lost["partitions"]} == frozen
    assert zombie.count("revoked", after=frozen_at) == 0
    await group.wait(lambda: group.balanced(2), "2 consumers balanced again")


@secure_too
async def test_static_member_restart_keeps_its_partitions(
    cluster: LocalCluster, consumers: Callable[[str], Consumers]
) -> None:
    """A static member (instance id) stopped with SIGTERM (leave with epoch -2) and
    restarted within its session timeout gets the same partitions back, and the other
    member sees no rebalance at all."""
    group = consumers("static")
    await group.start("s1", "--instance-id", "worker-1", "--session-timeout-ms", "15000")
    await group.start("s2", "--instance-id", "worker-2", "--session-timeout-ms", "15000")
    await group.wait(lambda: group.balanced(2), "2 static members with 6 each")
    mine = group.procs["s1"].owned()
    stopped_at = time.monotonic()
    await group.kill("s1", signal.SIGTERM)
    assert group.procs["s1"].process.returncode == 0
    restarted = await group.start(
        "s1", "--instance-id", "worker-1", "--session-timeout-ms", "15000"
    )
    await group.wait(lambda: restarted.owned() == mine, "the restarted member's partitions")
    other = group.procs["s2"]
    assert other.count("assigned", after=stopped_at) == 0
    assert other.count("revoked", after=stopped_at) == 0
    group.check_exclusive()


@secure_too
async def test_members_continue_across_manager_failover(
    cluster: LocalCluster, consumers: Callable[[str], Consumers]
) -> None:
    """kill -9 the active group manager under two live consumers: the standby takes over
    and the consumers keep their partitions (no lost, revoked or assigned callbacks)."""
    group = consumers("survivors")
    for name in ("f1", "f2"):
        await group.start(name, "--session-timeout-ms", "8000")
    await group.wait(lambda: group.balanced(2), "2 consumers with 6 each")
    owned = {name: proc.owned() for name, proc in group.procs.items()}
    active = await role_holder(cluster)
    killed = manager_name(cluster, active)
    cluster.kill(killed, signal.SIGKILL)
    killed_at = time.monotonic()
    heartbeats = {name: proc.heartbeats() for name, proc in group.procs.items()}
    try:
        # Every consumer gets three heartbeats answered after the kill: by the new manager.
        await group.wait(
            lambda: all(p.heartbeats() >= heartbeats[n] + 3 for n, p in group.procs.items()),
            "heartbeats answered by the new group manager",
        )
        assert await role_holder(cluster) != active
        for name, proc in group.procs.items():
            assert proc.owned() == owned[name]
            assert proc.count("lost", after=killed_at) == 0
            assert proc.count("revoked", after=killed_at) == 0
            assert proc.count("assigned", after=killed_at) == 0
        group.check_exclusive()
    finally:
        cluster.restart(killed, keep_address=False)


class FakeStorage(storage_pb2_grpc.StorageServiceServicer):
    """A storage node that only answers ListOffsets: log start 10, high watermark 100, and
    42 for any timestamp query."""

    async def ListOffsets(
        self, request: storage_pb2.ListOffsetsRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ListOffsetsResponse:
        answers = {
            storage_pb2.OFFSET_QUERY_EARLIEST: 10,
            storage_pb2.OFFSET_QUERY_LATEST: 100,
            storage_pb2.OFFSET_QUERY_TIMESTAMP: 42,
        }
        return storage_pb2.ListOffsetsResponse(
            partitions=[
                storage_pb2.ListedOffset(
                    topic=p.topic, partition=p.partition, offset=answers[p.query]
                )
                for p in request.partitions
            ]
        )


async def test_cli_describes_resets_and_deletes_groups(
    cluster: LocalCluster, stubs: Callable[[str], Any]
) -> None:
    """`brook group` list / describe (with lag from the partition leader) / reset-offsets
    (dry run, to-offset clamped to the log, shift-by, to-datetime) / delete against the real
    group manager; the leader is a fake storage node registered in etcd that answers
    ListOffsets. Also runs `brook group list` as a real process."""
    server = grpc.aio.server()
    storage_pb2_grpc.add_StorageServiceServicer_to_server(FakeStorage(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    store = MetadataStore(cluster.etcd, cluster_name=cluster.cluster_name)
    await store.connect()
    lease = None
    try:
        lease = await store.register_node(NodeInfo(7, f"127.0.0.1:{port}"), ttl_s=10)
        record = TopicRecord("lagged", uuid.uuid4().hex, 2, 1)
        await store.create_topic(
            record,
            [PartitionRecord("lagged", p, record.topic_id, (7,), 7, 1, (7,)) for p in range(2)],
        )
        active = await role_holder(cluster)
        stub = stubs(active)
        deadline = time.monotonic() + WAIT_S
        while True:  # the manager's metadata cache learns the new topic by watch
            response = await call(
                stub.CommitOffsets,
                groups_pb2.CommitOffsetsRequest(
                    group_id="cli-g",
                    member_epoch=-1,
                    offsets=[groups_pb2.OffsetCommit(topic="lagged", partition=0, offset=30)],
                ),
            )
            if from_partition_error(response.results[0].error) is None:
                break
            assert time.monotonic() < deadline, response
            await asyncio.sleep(0.05)  # polling a condition with a bounded deadline
        args = argparse.Namespace(bootstrap=cluster.address("coordinator"))

        async def run(handler: Any, **extra: Any) -> str:
            out = io.StringIO()
            await handler(argparse.Namespace(**vars(args), **extra), out)
            return out.getvalue()

        listing = await run(cli_groups.cmd_list, state=[])
        assert re.search(r"^cli-g\s+EMPTY\s+0\s", listing, re.M), listing
        described = await run(cli_groups.cmd_describe, group="cli-g", watch=False)
        assert re.search(r"^lagged\s+0\s+30\s+100\s+70\s", described, re.M), described
        watched = await run(
            cli_groups.cmd_describe,
            group="cli-g",
            watch=True,
            lag_interval_ms=500,
            max_updates=2,
        )
        assert watched.count("--- ") == 2 and "Group: cli-g" in watched

        def reset(**target: Any) -> dict[str, Any]:
            values: dict[str, Any] = {
                "group": "cli-g",
                "topic": ["lagged:0"],
                "all_topics": False,
                "to_earliest": False,
                "to_latest": False,
                "to_datetime": None,
                "to_offset": None,
                "shift_by": None,
                "execute": False,
                "dry_run": False,
            }
            values.update(target)
            return values

        dry = await run(cli_groups.cmd_reset_offsets, **reset(to_earliest=True))
        assert re.search(r"^lagged\s+0\s+30\s+10$", dry, re.M) and "dry run" in dry, dry
        clamped = await run(cli_groups.cmd_reset_offsets, **reset(to_offset=500, execute=True))
        assert re.search(r"^lagged\s+0\s+30\s+100$", clamped, re.M), clamped
        shifted = await run(cli_groups.cmd_reset_offsets, **reset(shift_by=-5, execute=True))
        assert re.search(r"^lagged\s+0\s+100\s+95$", shifted, re.M), shifted
        dated = await run(
            cli_groups.cmd_reset_offsets,
            **reset(to_datetime="2024-01-01T00:00:00Z", execute=True, topic=["lagged"]),
        )
        assert re.search(r"^lagged\s+0\s+95\s+42$", dated, re.M), dated
        assert re.search(r"^lagged\s+1\s+-\s+42$", dated, re.M), dated
        fetched = await call(stub.FetchOffsets, groups_pb2.FetchOffsetsRequest(group_id="cli-g"))
        assert {(o.partition, o.offset) for o in fetched.offsets} == {(0, 42), (1, 42)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "brook.client.cli",
            "--bootstrap",
            cluster.address("coordinator"),
            "group",
            "delete",
            "cli-g",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=REPO,
        )
        output, _ = await asyncio.wait_for(process.communicate(), WAIT_S)
        assert process.returncode == 0, output
        assert b"deleted group cli-g" in output
        listing = await run(cli_groups.cmd_list, state=[])
        assert "cli-g" not in listing
    finally:
        if lease is not None:
            await lease.revoke()
        await store.close()
        await server.stop(None)


async def test_unsubscribe_and_regex_subscription(cluster: LocalCluster) -> None:
    """In-process GroupConsumers: one subscribed by regex gets the matching topics
    ("events" and "other"), a second by name shares "events"; when the second
    unsubscribes it revokes everything and leaves, and the first ends up with all 14
    partitions. A regex that does not compile makes poll() raise INVALID_REGEX."""
    bootstrap = cluster.address("coordinator")
    by_regex = GroupConsumer(bootstrap, "regex", pattern="ev.*|oth.*", session_timeout_ms=5000)
    by_name = GroupConsumer(bootstrap, "regex", topics=[TOPIC], session_timeout_ms=5000)
    everything = {(TOPIC, p) for p in range(PARTITIONS)} | {("other", 0), ("other", 1)}

    async def poll_until(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.gather(by_regex.poll(timeout_ms=50), by_name.poll(timeout_ms=50))

    async with by_regex, by_name:
        await poll_until(
            lambda: (
                by_regex.assignment() | by_name.assignment() == everything
                and len(by_name.assignment()) >= 6
            ),
            "both members to share the partitions",
        )
        assert {tp.topic for tp in by_name.assignment()} == {TOPIC}
        by_name.unsubscribe()
        await poll_until(
            lambda: by_regex.assignment() == everything and not by_name.assignment(),
            "the regex member to own everything",
        )
        await poll_until(lambda: not by_name.member_id, "the unsubscribed member to leave")
    broken = GroupConsumer(bootstrap, "broken", pattern="ev(")
    async with broken:
        with pytest.raises(BrookError, match="INVALID_REGEX"):
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                await broken.poll(timeout_ms=100)
