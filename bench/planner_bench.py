"""How long the balancer's planner takes (services/coordinator/balancer.py) on clusters
of growing size: every partition (RF 3, random sizes) on the first N-1 nodes of three
racks, the last node joining empty, so the plan moves about its share onto it.

    .venv/bin/python bench/planner_bench.py [--seed 1]

Prints, per case, the planning time (best of 3) and the moves planned. Pure CPU, no
cluster: the coordinator runs the planner in a thread (balance_driver.plan_async), so
this is how long a pass waits for its plan, not an event-loop stall.
"""

from __future__ import annotations

import argparse
import random
import time

from brook.services.coordinator.balancer import NodeView, PartitionView, plan
from brook.structs import TopicPartition

CASES = ((1_000, 10), (5_000, 10), (10_000, 20), (30_000, 30))


def cluster(
    partitions: int, nodes: int, rng: random.Random
) -> tuple[list[NodeView], list[PartitionView]]:
    views = [NodeView(i, rack=f"rack-{i % 3}") for i in range(1, nodes + 1)]
    placed = [
        PartitionView(TopicPartition(f"t{p // 100}", p % 100),
                      tuple(rng.sample(range(1, nodes), 3)), rng.randint(0, 1 << 30))
        for p in range(partitions)
    ]  # fmt: skip
    return views, placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print("partitions  nodes  plan (best of 3)  moves")
    for partitions, nodes in CASES:
        views, placed = cluster(partitions, nodes, rng)
        best = float("inf")
        moves = 0
        for _ in range(3):
            started = time.perf_counter()
            moves = len(plan(views, placed).moves)
            best = min(best, time.perf_counter() - started)
        print(f"{partitions:>10}  {nodes:>5}  {best:>14.3f} s  {moves:>5}")


if __name__ == "__main__":
    main()
