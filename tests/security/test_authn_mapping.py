"""Principal mapping rules (`--principal-mapping`): pure functions, no server."""

from __future__ import annotations

import pytest

from brook.services.common.principal import (
    Principal,
    default_principal,
    map_certificate,
    parse_mapping_rules,
)


def mapped(rules: str, subject: str, sans: tuple[str, ...] = (), cn: str = "") -> str | None:
    principal = map_certificate(parse_mapping_rules(rules), subject, sans, cn)
    return None if principal is None else str(principal)


def test_default_maps_cn_to_user_and_node_cn_to_node() -> None:
    assert mapped("DEFAULT", "CN=alice,O=Brook", cn="alice") == "user:alice"
    assert mapped("DEFAULT", "CN=node-3,O=Brook", cn="node-3") == "node:3"
    assert mapped("DEFAULT", "CN=node-07", cn="node-07") == "node:7"
    # Not the node convention: a user whose CN merely starts with "node-".
    assert mapped("DEFAULT", "CN=node-x", cn="node-x") == "user:node-x"
    assert mapped("DEFAULT", "CN=node-", cn="node-") == "user:node-"
    assert mapped("DEFAULT", "CN=node-٣", cn="node-٣") == "user:node-٣"  # non-ASCII digit
    assert default_principal("") is None
    assert mapped("DEFAULT", "O=Brook") is None  # no CN: nothing to map


def test_rules_in_order_first_match_wins_with_groups_and_case() -> None:
    rules = r"RULE:^CN=([^,]+),OU=ops,O=Acme$/$1-ops/L, RULE:^CN=(.*?),.*$/$1/U, DEFAULT"
    assert mapped(rules, "CN=Bob,OU=ops,O=Acme", cn="Bob") == "user:bob-ops"
    assert mapped(rules, "CN=Bob,OU=dev,O=Acme", cn="Bob") == "user:BOB"
    assert mapped(rules, "CN=solo", cn="solo") == "user:solo"  # falls through to DEFAULT


def test_regex_must_match_the_whole_string() -> None:
    assert mapped(r"RULE:CN=alice/alice/", "CN=alice,O=Brook", cn="alice") is None
    assert mapped(r"RULE:CN=alice.*/alice/", "CN=alice,O=Brook", cn="alice") == "user:alice"


def test_rules_see_typed_sans() -> None:
    rules = (
        r"RULE:^URI:spiffe:\/\/brook\/node\/([0-9]+)$/node:$1/ "
        r"RULE:^DNS:(.+)\.users\.example$/$1/ "
        r"RULE:^email:([^@]+)@example\.com$/user:$1/"
    )
    assert mapped(rules, "CN=x", ("URI:spiffe://brook/node/12",)) == "node:12"
    assert mapped(rules, "CN=x", ("DNS:carol.users.example",)) == "user:carol"
    assert mapped(rules, "CN=x", ("email:dan@example.com",)) == "user:dan"
    assert mapped(rules, "CN=x", ("DNS:localhost",)) is None  # no DEFAULT: unmapped


def test_parse_errors_name_the_problem() -> None:
    for text, words in [
        ("", "no rule"),
        ("RULE:abc", "missing '/'"),
        ("RULE:(/x/", "regex"),
        ("DEFAULTS", "unexpected"),
        ("RULES:x/y/", "expected RULE"),
        ("RULE:a/b/Q", "unexpected"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_mapping_rules(text)


def test_a_node_result_must_be_a_node_id() -> None:
    with pytest.raises(ValueError, match="node:<id>"):
        map_certificate(parse_mapping_rules("RULE:^CN=(.*)$/node:$1/"), "CN=abc")
    assert map_certificate(parse_mapping_rules("RULE:^CN=(.*)$/node:$1/"), "CN=5") == Principal(
        "node", "5"
    )


def test_separators_and_escaped_slashes() -> None:
    rules = parse_mapping_rules("RULE:^CN=a\\/b$/a\\/b/\n\tDEFAULT")
    assert len(rules) == 2
    assert str(map_certificate(rules, "CN=a/b")) == "user:a/b"
