"""The chaos command-line options (`--chaos-duration`, `--chaos-seed`) and their readers.

`pytest_addoption` here makes this module usable as a plugin from the root conftest
(`pytest_plugins = ["tests.chaos.options"]`); tests/chaos/conftest.py registers the same
options when pytest is started on tests/chaos. Registering twice is harmless.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

# Room the campaign gets beyond --chaos-duration: healing, the drain and the final read.
CAMPAIGN_TIMEOUT_MARGIN_S = 300.0
SEED_KEY = pytest.StashKey[int]()


def add_chaos_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "randomized fault campaign (tests/chaos)")
    try:
        group.addoption(
            "--chaos-duration",
            type=float,
            default=None,
            metavar="SECONDS",
            help="run the randomized fault campaign for SECONDS (skipped when not given)",
        )
        group.addoption(
            "--chaos-seed",
            type=int,
            default=None,
            metavar="N",
            help="seed of the campaign's random choices (default: random, logged)",
        )
    except ValueError:
        pass  # already registered by the other hook (plugin and conftest both loaded)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_chaos_options(parser)


def chaos_option(config: pytest.Config, name: str) -> Any:
    """The option's value, or None when no conftest registered it."""
    return config.getoption(name, default=None)


def campaign_timeout_s(config: pytest.Config) -> float | None:
    duration = chaos_option(config, "chaos_duration")
    return None if duration is None else float(duration) + CAMPAIGN_TIMEOUT_MARGIN_S


def campaign_seed(config: pytest.Config) -> int:
    """--chaos-seed, or one random seed chosen once per session (so it can be logged)."""
    if SEED_KEY not in config.stash:
        seed = chaos_option(config, "chaos_seed")
        config.stash[SEED_KEY] = int(seed) if seed is not None else random.randrange(2**31)
    return config.stash[SEED_KEY]
