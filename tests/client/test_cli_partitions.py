"""`brook partitions|node|leaders` (issue 13): plan files in kafka-reassign-partitions'
format, and the dispatch of `brook node ACTION` between the client and the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brook.client.cli.main import build_parser
from brook.client.cli.partitions import plan_document, read_plan
from brook.services import cli as console


def write(tmp_path: Path, document: object) -> str:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_a_plan_file_round_trips(tmp_path: Path) -> None:
    document = plan_document([("b", 1, [3, 1]), ("a", 0, [1, 2])])
    assert document == {
        "version": 1,
        "partitions": [
            {"topic": "a", "partition": 0, "replicas": [1, 2]},
            {"topic": "b", "partition": 1, "replicas": [3, 1]},
        ],
    }
    assert read_plan(write(tmp_path, document)) == {("a", 0): (1, 2), ("b", 1): (3, 1)}


@pytest.mark.parametrize(
    "document",
    [
        {"partitions": []},
        {"version": 2, "partitions": []},
        {"version": 1, "partitions": {}},
        {"version": 1, "partitions": [{"topic": "a", "replicas": [1]}]},
        {"version": 1, "partitions": [{"topic": "a", "partition": -1, "replicas": [1]}]},
        {"version": 1, "partitions": [{"topic": "a", "partition": 0, "replicas": ["1"]}]},
        {"version": 1, "partitions": [{"topic": "a", "partition": 0, "replicas": [1]}] * 2},
        [],
    ],
)
def test_a_malformed_plan_file_is_refused(tmp_path: Path, document: object) -> None:
    with pytest.raises(ValueError):
        read_plan(write(tmp_path, document))


def test_node_actions_go_to_the_client_and_the_rest_to_the_server() -> None:
    assert console._client_node_action(["node", "list"])
    assert console._client_node_action(["node", "decommission", "4"])
    assert not console._client_node_action(["node", "--node-id", "4"])
    assert not console._client_node_action(["node"])
    args = build_parser({"node": "run a storage node"}).parse_args(
        ["node", "decommission", "4"]
    )
    assert (args.node_command, args.node_id) == ("decommission", 4)


def test_the_commands_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["partitions", "reassign", "--status"])
    assert args.status == "" and not args.plan
    args = parser.parse_args(["partitions", "rebalance", "--execute", "--max-moves", "3"])
    assert args.execute and args.max_moves == 3
    args = parser.parse_args(["leaders", "elect", "--unclean", "--topic", "t"])
    assert args.unclean and args.topic == "t"
    with pytest.raises(SystemExit):
        parser.parse_args(["leaders", "elect", "--preferred", "--unclean"])
