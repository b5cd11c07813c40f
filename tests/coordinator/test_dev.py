"""`brook dev` end to end: real etcd, real coordinator (and nodes/groups when installed)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from brook.errors import from_rpc_error
from brook.services.metadata import MetadataStore, PartitionRecord, TopicRecord
from brook.v1 import admin_pb2, admin_pb2_grpc
from tests.harness.wait import eventually

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_base_port() -> int:
    """A base port whose whole dev layout (P, P+1, P+11, P+100, P+101) is free now."""
    for _ in range(50):
        base = random.randrange(20_000, 40_000)
        if all(_free(base + offset) for offset in (0, 1, 11, 100, 101)):
            return base
    raise RuntimeError("no free port range for brook dev")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class DevRun:
    """One `python -m brook.services.dev` process, its log, and its cluster.json."""

    def __init__(self, data_dir: Path, base_port: int, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "brook.services.dev",
                    "--nodes", "1",
                    "--data-dir", str(data_dir),
                    "--base-port", str(base_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.description: dict[str, object] = {}

    def wait_description(self) -> dict[str, object]:
        path = self.data_dir / "cluster.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not path.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"brook dev exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no cluster.json in time:\n{self.log_tail()}")
            time.sleep(0.1)  # polling for the file with a bounded deadline
        self.description = json.loads(path.read_text())
        return self.description

    def pids(self) -> list[int]:
        services = self.description.get("services", [])
        assert isinstance(services, list)
        return [int(s["pid"]) for s in services]

    def terminate(self) -> int | None:
        self.process.send_signal(signal.SIGTERM)  # to brook dev only: it must stop the rest
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self) -> None:
        for pid in [self.process.pid, *self.pids()]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        print(self.log_tail())

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def describe_cluster(address: str) -> admin_pb2.DescribeClusterResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            return await admin_pb2_grpc.AdminServiceStub(channel).DescribeCluster(
                admin_pb2.DescribeClusterRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None


async def test_brook_dev_starts_serves_stops_and_keeps_data(tmp_path: Path) -> None:
    """brook dev --nodes 1 writes cluster.json once ready; the coordinator answers health
    and DescribeCluster; SIGTERM to brook dev stops every child; a second run on the same
    data dir still has the topic written during the first (etcd data kept)."""
    data_dir = tmp_path / "data"
    base_port = pick_base_port()
    first = DevRun(data_dir, base_port, tmp_path / "dev-1.log")
    try:
        description = first.wait_description()
        bootstrap = str(description["bootstrap"])
        assert bootstrap == f"127.0.0.1:{base_port}"
        assert description["etcd"] == f"127.0.0.1:{base_port + 100}"
        services = description["services"]
        assert isinstance(services, list)
        roles = {s["role"] for s in services}
        assert {"etcd", "coordinator"} <= roles

        async with grpc.aio.insecure_channel(bootstrap) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        cluster = await eventually(
            lambda: describe_cluster(bootstrap), timeout_s=15, what="coordinator active"
        )
        assert cluster.coordinator.address == bootstrap
        if "node" in roles:
            await eventually(lambda: _has_nodes(bootstrap), timeout_s=20, what="node registered")

        store = MetadataStore(str(description["etcd"]))
        await store.connect()
        try:
            topic = TopicRecord("kept", "kept-id", 1, 1)
            await store.create_topic(
                topic, [PartitionRecord("kept", 0, "kept-id", replicas=(1,), leader=1, isr=(1,))]
            )
        finally:
            await store.close()

        assert first.terminate() == 0, first.log_tail()
        for pid in first.pids():
            assert not alive(pid), f"child {pid} still running after brook dev exited"
    finally:
        first.cleanup()

    second = DevRun(data_dir, base_port, tmp_path / "dev-2.log")
    try:
        second.wait_description()

        async def kept() -> bool:
            async with grpc.aio.insecure_channel(bootstrap) as channel:
                reply = await admin_pb2_grpc.AdminServiceStub(channel).DescribeTopic(
                    admin_pb2.DescribeTopicRequest(name="kept"), timeout=5
                )
            return reply.topic.topic_id == "kept-id"

        await eventually(kept, timeout_s=15, what="topic kept across restart")
        assert second.terminate() == 0, second.log_tail()
    finally:
        second.cleanup()


async def _has_nodes(address: str) -> bool:
    return len((await describe_cluster(address)).nodes) >= 1
