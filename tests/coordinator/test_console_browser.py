"""The coordinator's web console in a real headless browser (Debian's Chromium, driven with
`--dump-dom` and `--screenshot`), against a real cluster (etcd, coordinator with
--console-listen, group manager, three nodes): every page loads, its numbers match the
Admin and Group APIs (topics, partitions, leaders, ISR, the group's lag), the group's lag
chart is an <svg> with a polyline of points, the record browser shows produced values as
text and hex with markup escaped, and the console answers GET only.

Screenshots of each page are saved under the test's tmp dir; with
BROOK_CONSOLE_SCREENSHOTS=DIR (e.g. docs/console) they are copied there too."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from brook.client import Admin, Producer
from brook.client.admin import GroupAdmin
from brook.client.groups import GroupConsumer
from brook.v1 import groups_pb2
from tests.harness.cluster import LocalCluster
from tests.harness.wait import eventually

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_S = 30.0
NODE_ARGS = ["--lease-ttl-s", "2", "--replica-fetch-wait-ms", "200", "--drain-timeout-s", "2"]
TOPIC = "orders"
PARTITIONS = 3
RECORDS = 30  # per partition
GROUP = "shipping"  # committed offsets, no members: lag stays put
LIVE_GROUP = "billing"  # a live member consuming "audit" and committing
COMMITTED = 10
HOSTILE = b"<script>alert('x')</script>&amp;"


# One Chromium at a time: on 2 cores, parallel ones take longer in all (measured).
BROWSERS = asyncio.Semaphore(1)


async def chromium(tmp_path: Path, *args: str) -> str:
    """Runs headless Chromium once (its own profile dir); returns its stdout."""
    assert CHROMIUM is not None
    async with BROWSERS:
        return await _chromium(tmp_path, *args)


async def _chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
        "--disable-dev-shm-usage", "--disable-extensions", "--disable-background-networking",
        "--disable-sync", "--no-default-browser-check", "--hide-scrollbars",
        f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    shutil.rmtree(profile, ignore_errors=True)
    return stdout.decode()


async def dom(tmp_path: Path, url: str, shot: str = "") -> str:
    """The page's DOM as the browser built it; with `shot`, a screenshot of it too (same
    browser run) in tmp_path/screenshots/SHOT.png."""
    if not shot:
        return await chromium(tmp_path, "--dump-dom", url)
    target = tmp_path / "screenshots" / f"{shot}.png"
    target.parent.mkdir(exist_ok=True)
    page = await chromium(
        tmp_path, f"--screenshot={target}", "--window-size=1280,900", "--dump-dom", url
    )
    assert target.stat().st_size > 10_000, target  # a rendered page, not a blank one
    return page


async def fetch(url: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return str(answer.read().decode())

    return await asyncio.to_thread(get)


def span(document: str, element_id: str) -> int:
    found = re.search(rf'id="{element_id}">(\d+)<', document)
    assert found, (element_id, document[:2000])
    return int(found.group(1))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
async def test_console_pages_in_a_browser(
    local_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = local_cluster()
    cluster.add_coordinator(args=["--console-listen", "127.0.0.1:0"])
    cluster.add_groups(args=["--lag-sample-interval-ms", "200"])
    for node_id in (1, 2, 3):
        cluster.add_node(node_id, args=NODE_ARGS)
    cluster.start()
    bootstrap = cluster.address("coordinator")
    console = f"http://{cluster.processes['coordinator'].info['console_address']}"

    async with Admin(bootstrap) as admin, GroupAdmin(bootstrap) as groups:

        async def three_nodes() -> bool:
            return len((await admin.describe_cluster()).nodes) == 3

        await eventually(three_nodes, timeout_s=WAIT_S, what="three live nodes")
        await admin.create_topic(TOPIC, PARTITIONS, 3, wait_for_leaders=True)
        await admin.create_topic("audit", 1, 2, wait_for_leaders=True)
        async with Producer(bootstrap, acks="all", linger_ms=5) as producer:
            for partition in range(PARTITIONS):
                for offset in range(RECORDS):
                    value = HOSTILE if (partition, offset) == (0, 1) else b"hello-%d" % offset
                    await producer.send(TOPIC, value, key=b"k%d" % offset, partition=partition)
            await asyncio.wait_for(producer.flush(), WAIT_S)
        await groups.call(
            "CommitOffsets",
            groups_pb2.CommitOffsetsRequest(
                group_id=GROUP,
                member_epoch=-1,
                offsets=[
                    groups_pb2.OffsetCommit(topic=TOPIC, partition=p, offset=COMMITTED)
                    for p in range(PARTITIONS)
                ],
            ),
        )

        async with Producer(bootstrap, acks="all") as producer:
            for index in range(5):
                await producer.send("audit", b"event-%d" % index)
            await asyncio.wait_for(producer.flush(), WAIT_S)
        member = GroupConsumer(
            bootstrap, LIVE_GROUP, topics=["audit"], auto_offset_reset="earliest",
            auto_commit_interval_ms=200, client_id="console-test",
        )  # fmt: skip
        await member.start()
        seen = 0
        async with asyncio.timeout(WAIT_S):
            while seen < 5:
                seen += len(await member.poll(timeout_ms=200))
        await member.commit()
        live = asyncio.Event()

        async def keep_polling() -> None:
            while not live.is_set():
                await member.poll(timeout_ms=200)

        polling = asyncio.ensure_future(keep_polling())

        async def history() -> bool:
            answer = await groups.call(
                "GetLagHistory", groups_pb2.GetLagHistoryRequest(group_id=GROUP, max_points=5)
            )
            return len(answer.series) == PARTITIONS and all(
                2 <= len(s.points) <= 5 and s.points[-1].lag_records == RECORDS - COMMITTED
                for s in answer.series
            )

        await eventually(history, timeout_s=WAIT_S, what="two lag samples per partition")
        described_cluster = await admin.describe_cluster()
        topic = await admin.describe_topic(TOPIC)
        group = await groups.describe(GROUP)
        live_group = await groups.describe(LIVE_GROUP)
        assert [o.lag for o in live_group.offsets] == [0] and len(live_group.members) == 1

        urls = {
            "cluster": console + "/",
            "topics": console + "/topics",
            "topic": f"{console}/topic?name={TOPIC}",
            "group": f"{console}/group?id={GROUP}",
            "live": f"{console}/group?id={LIVE_GROUP}",
            "records": f"{console}/records?topic={TOPIC}&partition=0&offset=0&limit=5",
        }
        shot_names = ["cluster", "topic", "group", "records"]
        pages = {
            name: await dom(tmp_path, url, name if name in shot_names else "")
            for name, url in urls.items()
        }
        shots = [tmp_path / "screenshots" / f"{name}.png" for name in shot_names]
        # Two more pages over plain HTTP (they hold nothing a browser would change).
        pages["groups"] = await fetch(console + "/groups")
        pages["hex"] = await fetch(urls["records"] + "&format=hex")
        live.set()
        await polling
        await member.close()
    # -- the cluster page ---------------------------------------------------------------
    page = pages["cluster"]
    assert span(page, "topic-count") == described_cluster.topic_count == 2
    assert span(page, "partition-count") == described_cluster.partition_count == PARTITIONS + 1
    assert span(page, "node-count") == 3
    assert span(page, "under-replicated-count") == 0 and span(page, "offline-count") == 0
    assert "healthy" in page

    # -- topics, and one topic's partitions ---------------------------------------------
    page = pages["topics"]
    assert re.findall(r'class="topic" href="[^"]+">([^<]+)<', page) == ["audit", TOPIC]
    page = pages["topic"]
    rows = re.findall(
        r"<tr><td>(\d+)</td><td>(\d+)</td><td>\d+</td><td>\[([\d, ]+)\]</td><td>\[([\d, ]+)\]"
        r"</td><td><span class=\"ok\">in sync</span></td><td>([^<]*)</td>",
        page,
    )
    assert [(int(r[0]), int(r[1]), r[3]) for r in rows] == [
        (p.partition, p.leader_id, ", ".join(str(i) for i in p.isr_ids)) for p in topic.partitions
    ]
    for row in rows:  # every replica's size on disk is shown
        assert len(re.findall(r"\d: \d+(\.\d)? (B|KiB)", row[4])) == 3, row

    # -- groups, and the group with its lag chart ---------------------------------------
    page = pages["groups"]
    assert re.findall(r'class="group" href="[^"]+">([^<]+)<', page) == [LIVE_GROUP, GROUP]
    page = pages["group"]
    assert span(page, "total-lag") == sum(o.lag for o in group.offsets) == PARTITIONS * 20
    lags = [int(v) for v in re.findall(r'<span class="lag">(\d+)</span>', page)]
    assert lags == [o.lag for o in group.offsets]
    assert "<svg" in page
    polylines = re.findall(r'<polyline class="lag"[^>]* points="([^"]+)"', page)
    assert len(polylines) == PARTITIONS
    for points in polylines:
        pairs = points.split()
        assert len(pairs) >= 2 and all(re.fullmatch(r"[\d.]+,[\d.]+", p) for p in pairs)
    page = pages["live"]  # the live group: its member, assignment, lag 0
    assert span(page, "total-lag") == 0
    assert "console-test" in page and "audit:0" in page and "1 members" in page

    # -- the record browser: text (markup escaped, no script ran) and hex ---------------
    page = pages["records"]
    values = re.findall(r'<pre class="value">([^<]*)</pre>', page)
    assert values[0] == "hello-0" and len(values) == 5
    assert values[1] == "&lt;script&gt;alert('x')&lt;/script&gt;&amp;amp;"
    assert "<script" not in page
    page = pages["hex"]
    assert re.findall(r'<pre class="value">([^<]*)</pre>', page)[0] == b"hello-0".hex(" ")

    # -- read-only, bounded, escaped ----------------------------------------------------
    request = urllib.request.Request(console + "/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "GET"
    with pytest.raises(urllib.error.HTTPError) as missing:
        await asyncio.to_thread(
            urllib.request.urlopen, console + "/topic?name=%3Cb%3Enope", timeout=10
        )
    body = missing.value.read().decode()
    assert missing.value.code == 502 and "&lt;b&gt;nope" in body and "<b>nope" not in body
    capped = await asyncio.to_thread(
        urllib.request.urlopen, f"{console}/records?topic={TOPIC}&limit=100000", timeout=10
    )
    assert capped.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert capped.read().decode().count('<pre class="value">') == RECORDS  # <= the cap (100)

    copy_to = os.environ.get("BROOK_CONSOLE_SCREENSHOTS")
    if copy_to:
        for shot in shots:
            await asyncio.to_thread(os.makedirs, copy_to, exist_ok=True)
            await asyncio.to_thread(shutil.copy, shot, Path(copy_to) / shot.name)
