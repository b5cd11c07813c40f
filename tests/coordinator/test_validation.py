"""Admin request validation and page tokens (pure)."""

from __future__ import annotations

import pytest

from brook.errors import BrookError
from brook.services.coordinator import validation


@pytest.mark.parametrize("name", ["a", "A-b_c.1", "x" * 249, "..."])
def test_valid_topic_names(name: str) -> None:
    """Names of 1-249 characters of [a-zA-Z0-9._-] other than '.' and '..' are accepted."""
    validation.validate_topic_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 250, "a b", "a/b", "é"])
def test_invalid_topic_names(name: str) -> None:
    """Everything else is INVALID_TOPIC_NAME."""
    with pytest.raises(BrookError) as error:
        validation.validate_topic_name(name)
    assert error.value.reason == "INVALID_TOPIC_NAME"


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    """page() walks sorted names; its token resumes after the last name; a token we did
    not issue is INVALID_PAGE_TOKEN; page sizes default to 100 and cap at 1000."""
    names = ["d", "a", "c", "b", "e"]
    first, token = validation.page(names, "", 2)
    assert first == ["a", "b"]
    second, token = validation.page(names, validation.decode_page_token(token), 2)
    assert second == ["c", "d"]
    last, token = validation.page(names, validation.decode_page_token(token), 2)
    assert (last, token) == (["e"], "")
    for bad in ["!!", "e30", "bm90IGpzb24"]:
        with pytest.raises(BrookError) as error:
            validation.decode_page_token(bad)
        assert error.value.reason == "INVALID_PAGE_TOKEN"
    assert validation.page_size(0) == 100
    assert validation.page_size(5000) == 1000
    with pytest.raises(BrookError):
        validation.page_size(-1)


def test_assignments_validation() -> None:
    """Hand-placed replicas: one list per partition, equal lengths, distinct, live nodes."""
    assert validation.validate_assignments({0: (1, 2), 1: (2, 3)}, range(2), {1, 2, 3}) == 2
    cases = [
        ({0: (1, 2)}, "INVALID_REQUEST"),  # partition 1 missing
        ({0: (1, 2), 1: (3,)}, "INVALID_REPLICATION_FACTOR"),
        ({0: (1, 1), 1: (2, 3)}, "INVALID_REQUEST"),
        ({0: (1, 9), 1: (2, 3)}, "NODE_NOT_FOUND"),
    ]
    for assignments, reason in cases:
        with pytest.raises(BrookError) as error:
            validation.validate_assignments(assignments, range(2), {1, 2, 3})
        assert error.value.reason == reason
